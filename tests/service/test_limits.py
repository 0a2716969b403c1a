"""An agreement's limits and a client's rate under attack: concurrent requests racing for the
last extract of the month, dry runs that must not count, one idempotency key sent twice at
once or after its extract expired, and a client minting tokens as fast as it can."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.db import utcnow
from service.extracts import upkeep
from service.ratelimit import RateLimiter
from tests.service.journey import REQUEST, make_agreement, request_and_wait


@pytest.fixture
def partner(
    client: TestClient, admin: dict[str, str], make_dataset: Any, make_partner: Any
) -> dict[str, Any]:
    dataset, partner = make_dataset(), make_partner("Partner")
    agreement = make_agreement(
        client, admin, partner["id"], dataset["id"], limits={"extracts_per_month": 2}
    )
    return {**partner, "agreement_id": agreement["id"]}


def _at_once(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` for each i in threads released together; the results in order."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = call(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_never_pass_the_monthly_quota_together(
    client: TestClient, partner: dict[str, Any]
) -> None:
    url = f"/agreements/{partner['agreement_id']}/extracts"
    bodies = [{**REQUEST, "measures": ["subjects"], "totals": index % 2 == 0} for index in range(6)]
    responses = _at_once(
        6, lambda index: client.post(url, json=bodies[index], headers=partner["headers"])
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [202, 202, 429, 429, 429, 429], [r.text for r in responses]


def test_dry_runs_never_count_against_the_quota(
    client: TestClient, partner: dict[str, Any]
) -> None:
    url = f"/agreements/{partner['agreement_id']}"
    for _ in range(5):
        decision = client.post(f"{url}/decisions", json=REQUEST, headers=partner["headers"])
        assert decision.json()["permit"] is True
    for _ in range(2):
        assert request_and_wait(client, partner["headers"], partner["agreement_id"], REQUEST)
    refused = client.post(f"{url}/decisions", json=REQUEST, headers=partner["headers"]).json()
    assert [reason["code"] for reason in refused["reasons"]] == ["quota_reached"]


def test_one_idempotency_key_sent_twice_at_once_makes_one_extract(
    client: TestClient, partner: dict[str, Any]
) -> None:
    url = f"/agreements/{partner['agreement_id']}/extracts"
    headers = {**partner["headers"], "Idempotency-Key": "twice"}
    responses = _at_once(3, lambda _: client.post(url, json=REQUEST, headers=headers))
    assert [response.status_code for response in responses] == [202, 202, 202]
    assert len({response.json()["id"] for response in responses}) == 1
    other = client.post(url, json={**REQUEST, "totals": False}, headers=headers)
    assert (other.status_code, other.json()["field"]) == (409, "Idempotency-Key")
    # The other extract of the month is still there to be had.
    assert client.post(url, json=REQUEST, headers=partner["headers"]).status_code == 202


def test_a_replay_after_expiry_returns_the_expired_extract_without_counting(
    app: FastAPI, client: TestClient, partner: dict[str, Any]
) -> None:
    url = f"/agreements/{partner['agreement_id']}/extracts"
    headers = {**partner["headers"], "Idempotency-Key": "summer"}
    first = client.post(url, json=REQUEST, headers=headers).json()
    assert request_and_wait(client, partner["headers"], partner["agreement_id"], REQUEST)
    upkeep.expire_due(app.state.pool.runtime, utcnow() + datetime.timedelta(days=31))
    replayed = client.post(url, json=REQUEST, headers=headers)
    assert (replayed.status_code, replayed.json()["id"]) == (202, first["id"])
    assert replayed.json()["status"] == "expired"
    assert client.post(url, json=REQUEST, headers=partner["headers"]).status_code == 429


def test_a_client_minting_tokens_is_held_to_its_rate(
    app: FastAPI, client: TestClient, partner: dict[str, Any]
) -> None:
    """The token endpoint did not take from the client's bucket: a client could mint tokens
    without limit, each an audit entry and an argon2 check."""
    app.state.limiter = RateLimiter(per_second=0.5, burst=3)
    form = {
        "grant_type": "client_credentials",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
    }
    statuses = [client.post("/oauth/token", data=form).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.post("/oauth/token", data=form)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"] == "too_many_requests"
    assert partner["client_id"] in limited.json()["error_description"]
    wrong = client.post("/oauth/token", data={**form, "client_secret": "wrong"})
    assert wrong.status_code == 401  # an unauthenticated caller neither spends nor learns it

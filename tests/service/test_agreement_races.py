"""Administrators writing at once: an agreement made on a dataset while it is deleted,
concurrent changes to one agreement. Each leaves a state a single request could have left."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.agreements import service as agreements
from tests.service.factories import agreement_body


def test_an_agreement_made_while_its_dataset_is_deleted_leaves_one_of_them(
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, partner = make_dataset(), make_partner("Partner")
    pool = ThreadPoolExecutor(1)
    deletion: list[Future[Any]] = []
    checked = agreements.check_release

    def delete_meanwhile(*args: Any) -> None:
        # The deletion runs while the agreement is being made, before it commits; it waits
        # for it (if it can) at most half a second.
        deletion.append(pool.submit(client.delete, f"/datasets/{dataset['id']}", headers=admin))
        threading.Event().wait(0.5)
        checked(*args)

    monkeypatch.setattr(agreements, "check_release", delete_meanwhile)
    created = client.post(
        "/agreements", json=agreement_body(partner["id"], dataset["id"]), headers=admin
    )
    deleted = deletion[0].result(timeout=30)
    pool.shutdown()
    assert created.status_code == 201, created.text
    assert deleted.status_code == 409, deleted.text
    assert deleted.json()["error"] == "dataset_in_use"
    assert client.get(f"/datasets/{dataset['id']}", headers=admin).status_code == 200


@pytest.mark.parametrize("change", ["put", "suspend", "revoke"])
def test_changes_sent_at_once_from_one_version_make_one_new_version(
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
    change: str,
) -> None:
    dataset, partner = make_dataset(), make_partner("Partner")
    body = agreement_body(partner["id"], dataset["id"])
    agreement_id = client.post("/agreements", json=body, headers=admin).json()["id"]
    del body["partner_id"], body["dataset_id"]
    start = threading.Barrier(4)

    def send(number: int) -> int:
        start.wait()
        if change == "put":
            terms = {**body, "purpose": f"Purpose number {number}", "version": 1}
            response = client.put(f"/agreements/{agreement_id}", json=terms, headers=admin)
        else:
            url = f"/agreements/{agreement_id}/{change}"
            response = client.post(url, json={"version": 1}, headers=admin)
        assert response.status_code in (200, 409), response.text
        return response.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(send, range(4)))
    assert statuses == [200, 409, 409, 409]
    versions = client.get(f"/agreements/{agreement_id}/versions", headers=admin).json()
    assert [version["version"] for version in versions] == [1, 2]
    current = client.get(f"/agreements/{agreement_id}", headers=admin).json()
    assert (current["version"], current["status"]) == (2, versions[1]["status"])

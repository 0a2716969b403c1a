"""Microdata releases in the partner's ledger: a new version of a microdata agreement cannot be
joined by pseudonym with what the partner holds to break k (the security tester's attack: age
and département, then age alone, generalized less)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.extracts import upkeep
from service.ledger.models import LedgerEntry, MicrodataLedgerEntry
from tests.service.journey import make_agreement, request_and_wait, wait_for
from tests.service.test_cli_microdata_ledger import joint_sizes
from tests.service.test_microdata_agreements import (
    MICRODATA,
    RELEASE,
    dataset,  # noqa: F401 - the fixture
    download,
    microdata_agreement,
)

AGE_ONLY = {"quasi_identifiers": {"age": {}}}


def new_version(
    client: TestClient, admin: dict[str, str], agreement: dict[str, Any], **release: Any
) -> None:
    body = {
        "version": agreement["version"],
        **{k: agreement[k] for k in ("purpose", "legal_basis", "retention_days")},
        "valid_from": agreement["valid_from"],
        "valid_until": agreement["valid_until"],
        "release": {**RELEASE, "formats": ["csv"], **release},
        "limits": {},
    }
    updated = client.put(f"/agreements/{agreement['id']}", json=body, headers=admin)
    assert updated.status_code == 200, updated.text


def first_release(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
    **release: Any,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A lab, its microdata agreement and the first release under it."""
    lab = make_partner("Lab")
    agreement = microdata_agreement(client, admin, lab["id"], dataset["id"], **release)
    first = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert first["status"] == "succeeded", first["failure"]
    return lab, agreement, first


def at_version_two(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A lab holding version 1's release (age and département), its agreement now at version 2
    (age only)."""
    lab, agreement, first = first_release(client, admin, dataset, make_partner)
    new_version(client, admin, agreement, **AGE_ONLY)
    return lab, agreement, first


def test_a_new_version_cannot_be_joined_by_pseudonym_to_break_k(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
) -> None:
    lab, agreement, first = at_version_two(client, admin, dataset, make_partner)
    held = download(client, lab["headers"], first["id"])
    second = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    # Alone, age is released in 5-year bands; joined with version 1, the search moves to
    # 20-year bands, where every joint class holds.
    assert second["status"] == "succeeded", second["failure"]
    released = download(client, lab["headers"], second["id"])
    assert joint_sizes(released, held).min() >= 5
    manifest = client.get(f"/extracts/{second['id']}/manifest", headers=lab["headers"]).json()
    assert manifest["linkage"]["held_releases"] == [f"extract {first['id']}"]
    assert manifest["node"] == {"age": "band20"}
    assert manifest["records_suppressed"] <= 0.05 * 400
    with app.state.sessionmaker() as session:
        entries = session.scalars(
            select(MicrodataLedgerEntry).order_by(MicrodataLedgerEntry.created_at)
        ).all()
        assert [e.extract_id for e in entries] == [uuid.UUID(first["id"]), uuid.UUID(second["id"])]
        classes = json.loads(entries[0].classes)
    # Only the released pseudonyms and class numbers: no value of the data.
    assert set(classes) == set(held["person_id"])
    assert all(isinstance(number, int) for number in classes.values())
    assert len(set(classes.values())) == len(held.groupby(["age", "departement"]))


def test_a_version_no_node_protects_jointly_fails_naming_the_held_release(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
) -> None:
    fine = {"protection": {"k": 2, "suppression_limit": 0.05}}
    lab, agreement, first = first_release(client, admin, dataset, make_partner, **fine)
    # Version 1's classes are small: no class of version 2 can hold 20 of one of them.
    new_version(client, admin, agreement, **AGE_ONLY, protection={"k": 20})
    second = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert second["status"] == "failed"
    assert second["failure_code"] == "linkable_with_held", second["failure"]
    assert f"extract {first['id']}" in second["failure"]
    refused = client.get(f"/extracts/{second['id']}/download", headers=lab["headers"])
    assert refused.status_code == 409
    with app.state.sessionmaker() as session:
        entries = session.scalars(select(MicrodataLedgerEntry)).all()
        assert [e.extract_id for e in entries] == [uuid.UUID(first["id"])]


def test_the_same_terms_again_pass_and_the_manifest_names_what_was_joined(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    lab, agreement, first = first_release(client, admin, dataset, make_partner)
    again = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert again["status"] == "succeeded", again["failure"]
    manifest = client.get(f"/extracts/{again['id']}/manifest", headers=lab["headers"]).json()
    assert manifest["linkage"] == {
        "held_releases": [f"extract {first['id']}"],
        "records_suppressed": 0,
    }
    assert download(client, lab["headers"], again["id"]).equals(
        download(client, lab["headers"], first["id"])
    )


def test_microdata_under_another_agreement_of_the_same_data_is_denied(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    # Its pseudonyms would not match the held ones, but exact sensitive values could join the
    # records: nothing proves the pair safe. A new version of the first agreement can.
    lab = make_partner("Lab")
    wide = microdata_agreement(client, admin, lab["id"], dataset["id"])
    first = request_and_wait(client, lab["headers"], wide["id"], MICRODATA)
    assert first["status"] == "succeeded", first["failure"]
    narrow = microdata_agreement(client, admin, lab["id"], dataset["id"], **AGE_ONLY)
    denied = client.post(
        f"/agreements/{narrow['id']}/extracts", json=MICRODATA, headers=lab["headers"]
    )
    assert denied.status_code == 403, denied.text
    reasons = denied.json()["reasons"]
    assert [(r["code"], r["field"]) for r in reasons] == [("holds_other_microdata", "agreement")]
    assert f"extract {first['id']}" in reasons[0]["detail"]
    other = make_partner("Other lab")
    theirs = microdata_agreement(client, admin, other["id"], dataset["id"], **AGE_ONLY)
    done = request_and_wait(client, other["headers"], theirs["id"], MICRODATA)
    assert done["status"] == "succeeded", done["failure"]


def _aggregate_agreement(
    client: TestClient, admin: dict[str, str], partner: str, dataset_id: str
) -> dict[str, Any]:
    release = {"dimensions": {"sex": "value"}, "protection": {"k": 5}}
    return make_agreement(client, admin, partner, dataset_id, release=release, limits={})


AGGREGATE = {"group_by": {"sex": "value"}, "measures": ["subjects"], "format": "csv"}


def test_one_partner_gets_one_kind_of_release_of_the_data(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    # Aggregates and records of one population are not protected jointly (a suppressed cell
    # would be counted back from the records): whichever kind the partner holds, the other
    # is denied, in the decision and at the request.
    lab, _agreement, first = first_release(client, admin, dataset, make_partner)
    aggregates = _aggregate_agreement(client, admin, lab["id"], dataset["id"])
    decided = client.post(
        f"/agreements/{aggregates['id']}/decisions", json=AGGREGATE, headers=lab["headers"]
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["permit"] is False
    assert [r["code"] for r in decided.json()["reasons"]] == ["holds_microdata"]
    denied = client.post(
        f"/agreements/{aggregates['id']}/extracts", json=AGGREGATE, headers=lab["headers"]
    )
    assert denied.status_code == 403, denied.text
    assert f"extract {first['id']}" in denied.json()["reasons"][0]["detail"]

    city = make_partner("City")
    theirs = _aggregate_agreement(client, admin, city["id"], dataset["id"])
    done = request_and_wait(client, city["headers"], theirs["id"], AGGREGATE)
    assert done["status"] == "succeeded", done["failure"]
    records = microdata_agreement(client, admin, city["id"], dataset["id"])
    denied = client.post(
        f"/agreements/{records['id']}/extracts", json=MICRODATA, headers=city["headers"]
    )
    assert denied.status_code == 403, denied.text
    assert [r["code"] for r in denied.json()["reasons"]] == ["holds_aggregates"]
    assert f"extract {done['id']}" in denied.json()["reasons"][0]["detail"]


def test_a_job_fails_if_the_partner_came_to_hold_the_other_kind_meanwhile(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both requests permitted while the partner held nothing; the job that runs second fails.
    monkeypatch.setattr(upkeep, "claim", lambda *args: [])
    lab = make_partner("Lab")
    records = microdata_agreement(client, admin, lab["id"], dataset["id"])
    aggregates = _aggregate_agreement(client, admin, lab["id"], dataset["id"])
    sent = [
        client.post(
            f"/agreements/{records['id']}/extracts", json=MICRODATA, headers=lab["headers"]
        ),
        client.post(
            f"/agreements/{aggregates['id']}/extracts", json=AGGREGATE, headers=lab["headers"]
        ),
    ]
    assert [response.status_code for response in sent] == [202, 202], sent[1].text
    monkeypatch.undo()
    app.state.pool.wake()
    done = [
        wait_for(client, lab["headers"], response.json()["id"], ("succeeded", "failed"))
        for response in sent
    ]
    assert sorted(job["status"] for job in done) == ["failed", "succeeded"], done
    failed = next(job for job in done if job["status"] == "failed")
    assert failed["failure_code"] in ("holds_microdata", "holds_aggregates"), failed["failure"]
    with app.state.sessionmaker() as session:
        held = len(session.scalars(select(MicrodataLedgerEntry)).all())
        held += len(session.scalars(select(LedgerEntry)).all())
    assert held == 1


def test_two_jobs_of_one_partner_queued_together_run_one_after_the_other(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],  # noqa: F811
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
) -> None:
    # Held: the service claims one job per partner (two workers here), so the second job of two
    # requested at once reads the ledger with the first one in it and is protected jointly.
    lab, agreement, _first = at_version_two(client, admin, dataset, make_partner)
    sent = [
        client.post(
            f"/agreements/{agreement['id']}/extracts", json=MICRODATA, headers=lab["headers"]
        )
        for _ in range(2)
    ]
    assert all(response.status_code == 202 for response in sent), sent[0].text
    done = [
        wait_for(client, lab["headers"], response.json()["id"], ("succeeded", "failed"))
        for response in sent
    ]
    assert [job["status"] for job in done] == ["succeeded", "succeeded"], done
    later = sorted(done, key=lambda job: job["finished_at"])[1]
    manifest = client.get(f"/extracts/{later['id']}/manifest", headers=lab["headers"]).json()
    assert len(manifest["linkage"]["held_releases"]) == 2
    with app.state.sessionmaker() as session:
        assert len(session.scalars(select(MicrodataLedgerEntry)).all()) == 3

"""``/agreements``: validation against the dataset, versions, optimistic locking, statuses, BOLA."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.factories import RELEASE, agreement_body


@pytest.fixture
def setup(client: TestClient, admin: dict[str, str], make_dataset, make_partner) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dataset = make_dataset()
    first, second = make_partner("First partner"), make_partner("Second partner")
    response = client.post(
        "/agreements", json=agreement_body(first["id"], dataset["id"]), headers=admin
    )
    assert response.status_code == 201, response.text
    return {"dataset": dataset, "first": first, "second": second, "agreement": response.json()}


def _update(setup: dict[str, Any], version: int, **changes: Any) -> dict[str, Any]:
    body = agreement_body(setup["first"]["id"], setup["dataset"]["id"], version=version, **changes)
    del body["partner_id"], body["dataset_id"]
    return body


def test_created_agreement_is_version_1_in_force(setup: dict[str, Any]) -> None:
    agreement = setup["agreement"]
    assert agreement["version"] == 1
    assert agreement["status"] == "active"
    assert agreement["in_force"] is True
    assert agreement["release"]["protection"]["k"] == 5
    assert agreement["limits"] == {"extracts_per_month": 10}


BAD_RELEASES = [
    ({**RELEASE, "dimensions": {"departement": "iris"}}, "release.dimensions.departement"),
    ({**RELEASE, "dimensions": {"card_id": "value"}}, "release.dimensions.card_id"),
    ({**RELEASE, "measures": {"age": ["sum"]}}, "release.measures.age"),
    ({**RELEASE, "protection": {"k": 1}}, "release.protection.k"),
    ({**RELEASE, "protection": {"k": 9223372036854775808}}, "release.protection.k"),
    ({**RELEASE, "protection": {"k": 10**30}}, "release.protection.k"),
    ({**RELEASE, "protection": {"k": 1_000_001}}, "release.protection.k"),
    ({**RELEASE, "max_cells": 10**30}, "release.max_cells"),
    ({**RELEASE, "formats": []}, "release.formats"),
    (
        {**RELEASE, "protection": {"k": 5, "dominance": {"percent": 85, "measure": "nope"}}},
        "release.protection.dominance.measure",
    ),
    (
        {**RELEASE, "protection": {"k": 5, "p_percent": {"p": 10, "measure": "age"}}},
        "release.protection.p_percent.measure",
    ),
    (
        {**RELEASE, "measures": {"amount": ["count"]}},
        "release.protection.dominance.measure",
    ),
    ({**RELEASE, "dimensions": {"date": "fortnight"}}, "release.dimensions.date"),
    ({**RELEASE, "protection": {"k": 5, "p_percent": 0}}, "release.protection.p_percent.p"),
    (
        {**RELEASE, "protection": {"k": 5, "interval": {"p": 100}}},
        "release.protection.interval.p",
    ),
    (
        {**RELEASE, "protection": {"k": 5, "noise": {"method": "cell_key", "max": -1}}},
        "release.protection.noise.max",
    ),
]
BAD_TERMS = [
    ({"limits": {"max_cells": 10**30}}, "limits.max_cells"),
    ({"limits": {"extracts_per_month": 10**30}}, "limits.extracts_per_month"),
    ({"retention_days": "30"}, "retention_days"),
    ({"retention_days": True}, "retention_days"),
    ({"valid_from": 0}, "valid_from"),
    ({"release": {**RELEASE, "formats": ["csv", "csv"]}}, "release.formats"),
    ({"release": {**RELEASE, "protection": {"k": "5"}}}, "release.protection.k"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [*(({"release": release}, field) for release, field in BAD_RELEASES), *BAD_TERMS],
)
def test_terms_are_checked_against_the_dataset_and_their_bounds(
    client: TestClient,
    admin: dict[str, str],
    setup: dict[str, Any],
    changes: dict[str, Any],
    field: str,
) -> None:
    body = agreement_body(setup["first"]["id"], setup["dataset"]["id"], **changes)
    response = client.post("/agreements", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_bad_window_unknown_partner_and_dataset(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    partner, dataset = setup["first"]["id"], setup["dataset"]["id"]
    window = agreement_body(partner, dataset, valid_until="2024-01-01")
    assert client.post("/agreements", json=window, headers=admin).json()["field"] == "valid_until"
    missing = "00000000-0000-0000-0000-000000000001"
    response = client.post("/agreements", json=agreement_body(missing, dataset), headers=admin)
    assert (response.status_code, response.json()["field"]) == (422, "partner_id")
    response = client.post("/agreements", json=agreement_body(partner, missing), headers=admin)
    assert (response.status_code, response.json()["field"]) == (422, "dataset_id")
    basis = agreement_body(partner, dataset, legal_basis="because")
    assert client.post("/agreements", json=basis, headers=admin).json()["field"] == "legal_basis"


@pytest.mark.parametrize(
    "purpose", ["     ", "\u200b\u200b\u200b", "ab\u0000c", "tabs\x0bare\x0cnot lines", "  ab  "]
)
def test_a_blank_purpose_or_one_with_control_characters_is_422(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any], purpose: str
) -> None:
    body = agreement_body(setup["first"]["id"], setup["dataset"]["id"], purpose=purpose)
    response = client.post("/agreements", json=body, headers=admin)
    assert (response.status_code, response.json()["field"]) == (422, "purpose"), response.text
    update = _update(setup, 1, purpose=purpose)
    response = client.put(f"/agreements/{setup['agreement']['id']}", json=update, headers=admin)
    assert (response.status_code, response.json()["field"]) == (422, "purpose"), response.text


def test_a_purpose_is_trimmed_and_may_span_lines(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    purpose = "  Tourism spending\nby département  "
    body = agreement_body(setup["first"]["id"], setup["dataset"]["id"], purpose=purpose)
    response = client.post("/agreements", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["purpose"] == "Tourism spending\nby département"


def test_every_change_is_a_new_version_and_old_versions_stay_readable(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    agreement_id = setup["agreement"]["id"]
    release = {**RELEASE, "protection": {"k": 11}}
    updated = client.put(
        f"/agreements/{agreement_id}", json=_update(setup, 1, release=release), headers=admin
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    suspended = client.post(
        f"/agreements/{agreement_id}/suspend", json={"version": 2}, headers=admin
    )
    assert suspended.json()["status"] == "suspended"
    assert suspended.json()["in_force"] is False
    versions = client.get(f"/agreements/{agreement_id}/versions", headers=admin).json()
    assert [(v["version"], v["change"], v["status"]) for v in versions] == [
        (1, "create", "active"),
        (2, "update", "active"),
        (3, "suspend", "suspended"),
    ]
    first = client.get(f"/agreements/{agreement_id}/versions/1", headers=admin).json()
    assert first["release"]["protection"]["k"] == 5
    assert versions[2]["release"]["protection"]["k"] == 11


def test_stale_version_is_409(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    agreement_id = setup["agreement"]["id"]
    assert (
        client.put(f"/agreements/{agreement_id}", json=_update(setup, 1), headers=admin).status_code
        == 200
    )
    stale = client.put(f"/agreements/{agreement_id}", json=_update(setup, 1), headers=admin)
    assert stale.status_code == 409
    assert stale.json()["field"] == "version"
    stale_status = client.post(
        f"/agreements/{agreement_id}/revoke", json={"version": 1}, headers=admin
    )
    assert stale_status.status_code == 409


def test_status_transitions(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    agreement_id = setup["agreement"]["id"]
    url = f"/agreements/{agreement_id}"
    assert client.post(f"{url}/resume", headers=admin).status_code == 409
    assert client.post(f"{url}/suspend", headers=admin).json()["status"] == "suspended"
    assert client.post(f"{url}/resume", headers=admin).json()["status"] == "active"
    revoked = client.post(f"{url}/revoke", headers=admin).json()
    assert revoked["status"] == "revoked"
    assert client.post(f"{url}/resume", headers=admin).json()["error"] == "invalid_transition"
    assert (
        client.put(url, json=_update(setup, revoked["version"]), headers=admin).status_code == 409
    )


def test_partner_sees_only_its_own_agreements(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    agreement_id = setup["agreement"]["id"]
    first, second = setup["first"]["headers"], setup["second"]["headers"]
    assert [a["id"] for a in client.get("/agreements", headers=first).json()] == [agreement_id]
    assert client.get("/agreements", headers=second).json() == []
    filtered = client.get(
        "/agreements", params={"partner_id": setup["first"]["id"]}, headers=second
    ).json()
    assert filtered == []
    for path in ("", "/versions", "/versions/1"):
        assert client.get(f"/agreements/{agreement_id}{path}", headers=first).status_code == 200
        foreign = client.get(f"/agreements/{agreement_id}{path}", headers=second)
        assert foreign.status_code == 404
        assert foreign.json()["error"] == "not_found"


def test_a_partner_is_not_told_the_administrators_client_ids(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    # The token endpoint never says which client ids exist; the agreement did (changed_by).
    agreement_id = setup["agreement"]["id"]
    first = setup["first"]["headers"]
    for path in ("", "/versions", "/versions/1"):
        theirs = client.get(f"/agreements/{agreement_id}{path}", headers=first).json()
        ours = client.get(f"/agreements/{agreement_id}{path}", headers=admin).json()
        for shown, full in zip(
            theirs if isinstance(theirs, list) else [theirs],
            ours if isinstance(ours, list) else [ours],
            strict=True,
        ):
            assert shown["changed_by"] is None
            assert full["changed_by"] == setup["agreement"]["changed_by"] != ""
            assert {**shown, "changed_by": full["changed_by"]} == full
    listed = client.get("/agreements", headers=first).json()
    assert [a["changed_by"] for a in listed] == [None]


def test_partner_gets_403_on_agreement_and_dataset_admin_routes(
    client: TestClient, setup: dict[str, Any]
) -> None:
    headers = setup["first"]["headers"]
    agreement_id = setup["agreement"]["id"]
    body = agreement_body(setup["first"]["id"], setup["dataset"]["id"])
    assert client.post("/agreements", json=body, headers=headers).status_code == 403
    assert (
        client.put(
            f"/agreements/{agreement_id}", json=_update(setup, 1), headers=headers
        ).status_code
        == 403
    )
    assert client.post(f"/agreements/{agreement_id}/revoke", headers=headers).status_code == 403
    assert client.get("/datasets", headers=headers).status_code == 403
    assert client.get(f"/datasets/{setup['dataset']['id']}", headers=headers).status_code == 403
    assert client.delete(f"/datasets/{setup['dataset']['id']}", headers=headers).status_code == 403


def test_admin_filters(client: TestClient, admin: dict[str, str], setup: dict[str, Any]) -> None:
    second = client.post(
        "/agreements",
        json=agreement_body(setup["second"]["id"], setup["dataset"]["id"]),
        headers=admin,
    ).json()
    client.post(f"/agreements/{second['id']}/suspend", headers=admin)
    assert len(client.get("/agreements", headers=admin).json()) == 2
    suspended = client.get("/agreements", params={"status": "suspended"}, headers=admin).json()
    assert [a["id"] for a in suspended] == [second["id"]]
    mine = client.get(
        "/agreements", params={"partner_id": setup["first"]["id"]}, headers=admin
    ).json()
    assert [a["id"] for a in mine] == [setup["agreement"]["id"]]


def test_a_version_past_the_databases_integers_is_422(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    # It compared as stale (409); like every integer the API reads, it is bounded by the
    # narrower INTEGER of the two databases.
    agreement_id = setup["agreement"]["id"]
    huge = {**_update(setup, 1), "version": 2**63}
    put = client.put(f"/agreements/{agreement_id}", json=huge, headers=admin)
    assert put.status_code == 422 and put.json()["field"] == "version", put.json()
    revoke = client.post(
        f"/agreements/{agreement_id}/revoke", json={"version": 2**31}, headers=admin
    )
    assert revoke.status_code == 422 and revoke.json()["field"] == "version", revoke.json()

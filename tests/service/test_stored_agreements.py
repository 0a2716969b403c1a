"""Agreement versions stored before a bound was tightened (microdata k = 1, formats: [], a
max_cells of 10^12) are read back as they are: listed, marked not valid with every failing
field, and nothing is decided or released under them until an administrator writes a new
version."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.agreements.models import Agreement, AgreementVersion
from service.audit import service as audit
from service.extracts.models import Extract
from tests.service.factories import RELEASE, agreement_body
from tests.service.journey import REQUEST, make_agreement, request_and_wait, wait_for
from tests.service.test_microdata_agreements import MICRODATA
from tests.service.test_microdata_agreements import RELEASE as MICRODATA_RELEASE
from tests.service.test_microdata_agreements import dataset as people

__all__ = ["people"]
TERMS = ("purpose", "legal_basis", "valid_from", "valid_until", "release", "limits")

# kind → (the release of version 1, what version 2 was stored with, the fields named, request)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], list[str], dict[str, Any]]] = {
    "microdata k = 1": (
        MICRODATA_RELEASE,
        {"release": {**MICRODATA_RELEASE, "protection": {"k": 1}}, "limits": {}},
        ["agreement.release.protection.k"],
        MICRODATA,
    ),
    "aggregate formats [] and max_cells 10^12": (
        RELEASE,
        {"release": {**RELEASE, "formats": []}, "limits": {"max_cells": 10**12}},
        ["agreement.release.formats", "agreement.limits.max_cells"],
        REQUEST,
    ),
}


def store_version(app: FastAPI, agreement_id: str, **stored: Any) -> int:
    """Write the agreement's next version straight into the database, unchecked (as versions
    written before a bound was tightened are), and make it current; its number."""
    with app.state.sessionmaker() as session:
        agreement = session.get_one(Agreement, uuid.UUID(agreement_id))
        previous = session.scalars(
            sa.select(AgreementVersion).where(
                AgreementVersion.agreement_id == agreement.id,
                AgreementVersion.version == agreement.version,
            )
        ).one()
        terms = {name: getattr(previous, name) for name in (*TERMS, "retention_days")}
        number = agreement.version + 1
        session.add(
            AgreementVersion(
                agreement_id=agreement.id,
                version=number,
                change="update",
                changed_by="before the bounds",
                status=agreement.status,
                **{**terms, **stored},
            )
        )
        head = sa.table("agreement", sa.column("id", sa.Uuid()), sa.column("version"))
        session.execute(sa.update(head).where(head.c.id == agreement.id).values(version=number))
        session.commit()
    return number


@pytest.fixture(params=list(CASES))
def stored(
    request: pytest.FixtureRequest,
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
) -> dict[str, Any]:
    """A partner's agreement whose current version (2) no longer passes the checks."""
    release, version, fields, extract = CASES[request.param]
    kind = release.get("kind", "aggregate")
    dataset = request.getfixturevalue("people") if kind == "microdata" else make_dataset()
    partner = make_partner("Partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"], release=release)
    assert store_version(app, agreement["id"], **version) == 2
    return {
        "id": agreement["id"],
        "partner": partner,
        "stored": version,
        "fields": fields,
        "request": extract,
        "terms": {
            name: value
            for name, value in agreement_body("", "", release=release, limits={}).items()
            if name not in ("partner_id", "dataset_id")
        },
    }


def test_it_is_listed_as_stored_and_marked_not_valid(
    client: TestClient, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    listed = client.get("/agreements", headers=admin)
    assert listed.status_code == 200, listed.text
    (found,) = listed.json()
    assert found == client.get(f"/agreements/{stored['id']}", headers=admin).json()
    assert (found["version"], found["valid"], found["in_force"]) == (2, False, False)
    assert (found["release"], found["limits"]) == (
        stored["stored"]["release"],
        {**stored["stored"]["limits"]},
    )
    assert [problem["field"] for problem in found["problems"]] == stored["fields"]
    assert {problem["code"] for problem in found["problems"]} == {"agreement_invalid"}
    assert "no longer passes" in found["problems"][0]["detail"]
    versions = client.get(f"/agreements/{stored['id']}/versions", headers=admin).json()
    assert [(v["version"], v["valid"]) for v in versions] == [(1, True), (2, False)]
    assert versions[0]["problems"] == []
    one = client.get(f"/agreements/{stored['id']}/versions/2", headers=admin).json()
    assert one["problems"] == found["problems"]
    partner = client.get("/agreements", headers=stored["partner"]["headers"])
    assert [a["valid"] for a in partner.json()] == [False]


def test_decisions_and_extracts_are_denied_naming_the_fields_until_a_new_version(
    client: TestClient, admin: dict[str, str], app: FastAPI, stored: dict[str, Any]
) -> None:
    headers, path = stored["partner"]["headers"], f"/agreements/{stored['id']}"
    decision = client.post(f"{path}/decisions", json=stored["request"], headers=headers)
    assert decision.status_code == 200, decision.text
    assert decision.json()["permit"] is False
    assert [r["field"] for r in decision.json()["reasons"]] == stored["fields"]
    refused = client.post(f"{path}/extracts", json=stored["request"], headers=headers)
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert (body["error"], body["field"]) == ("denied", stored["fields"][0])
    assert {r["code"] for r in body["reasons"]} == {"agreement_invalid"}
    assert [r["field"] for r in body["reasons"]] == stored["fields"]
    with app.state.sessionmaker() as session:
        denied = audit.search(session, "decision.denied", None, None, 0, 10)
        assert [event.details["reasons"][0] for event in denied] == ["agreement_invalid"] * 2
    # Suspending it works (its terms are copied as they are); a new version makes it valid.
    assert client.post(f"{path}/suspend", headers=admin).json()["valid"] is False
    assert client.post(f"{path}/resume", headers=admin).status_code == 200
    rewritten = client.put(path, json={**stored["terms"], "version": 4}, headers=admin)
    assert rewritten.status_code == 200, rewritten.text
    assert (rewritten.json()["valid"], rewritten.json()["problems"]) == (True, [])
    done = request_and_wait(client, headers, stored["id"], stored["request"])
    assert done["status"] == "succeeded", done


def test_a_queued_job_under_it_fails_naming_the_version(
    client: TestClient, app: FastAPI, stored: dict[str, Any]
) -> None:
    with app.state.sessionmaker() as session:
        agreement = session.get_one(Agreement, uuid.UUID(stored["id"]))
        queued = Extract(
            agreement_id=agreement.id,
            partner_id=agreement.partner_id,
            agreement_version=2,
            client_id=stored["partner"]["client_id"],
            request=stored["request"],
            request_hash="sha256:queued-before",
        )
        session.add(queued)
        session.commit()
    app.state.pool.wake()
    done = wait_for(client, stored["partner"]["headers"], str(queued.id), ("succeeded", "failed"))
    assert (done["status"], done["failure_code"]) == ("failed", "agreement_invalid"), done
    assert f"version 2 of agreement {stored['id']} no longer passes" in done["failure"]
    assert stored["fields"][0] in done["failure"]


def test_a_release_held_under_a_version_that_no_longer_passes_stops_later_ones(
    client: TestClient,
    admin: dict[str, str],
    app: FastAPI,
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    """The new release cannot be protected jointly with it: refused, naming that version."""
    dataset, partner = make_dataset(), make_partner("Partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"])
    held = request_and_wait(client, partner["headers"], agreement["id"], REQUEST)
    assert held["status"] == "succeeded", held
    with app.state.sessionmaker() as session:
        first = session.scalars(sa.select(AgreementVersion)).one()
        first.release = {**RELEASE, "protection": {"k": 1}}
        session.commit()
    assert store_version(app, agreement["id"], release=RELEASE) == 2
    later = request_and_wait(client, partner["headers"], agreement["id"], REQUEST)
    assert (later["status"], later["failure_code"]) == ("failed", "agreement_invalid"), later
    assert f"version 1 of agreement {agreement['id']} no longer passes" in later["failure"]

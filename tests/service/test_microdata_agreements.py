"""Agreements of kind ``microdata``: validated at creation, released as jobs with a pseudonym key
per agreement, scoped to their partner, checked independently for k and l."""

from __future__ import annotations

import io
import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from anonymization.microdata import agreement_key, pseudonymize
from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.db import make_engine
from service.extracts.manifest import verify_release
from service.migrate import alembic_config
from tests.service.journey import make_agreement, request_and_wait

ROOT = Path(__file__).resolve().parents[2]
PYCANON = ROOT / ".venv-pycanon" / "bin" / "python"
DEPARTEMENTS = ["01", "2A", "69", "74", "75", "13", "974", "29"]
POLICY: dict[str, Any] = {
    "dataset": {
        "subject": "person_id",
        "identifiers": ["name"],
        "columns": {
            "age": {"hierarchy": "age_bands"},
            "departement": {"hierarchy": "geo_fr", "level": "departement"},
            "sex": {},
            "diagnosis": {"type": "sensitive"},
        },
    },
    "hierarchies": {"age_bands": {"bands": [5, 10, 20, 40]}},
}
RELEASE: dict[str, Any] = {
    "kind": "microdata",
    "quasi_identifiers": {"age": {}, "departement": {}},
    "sensitive": ["diagnosis"],
    "protection": {"k": 5, "l": {"kind": "distinct", "l": 2}, "suppression_limit": 0.05},
    "algorithm": "optimal",
}
MICRODATA = {"kind": "microdata", "format": "csv"}


def people(rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """One record per person: a subject, a name (identifier), two QIs, a sensitive value."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": [f"P{i:06d}" for i in range(rows)],
            "name": [f"Person Number{i}" for i in range(rows)],
            "age": rng.integers(18, 90, rows).astype(str),
            "departement": rng.choice(DEPARTEMENTS, rows),
            "sex": rng.choice(["F", "M"], rows),
            "diagnosis": rng.choice(["flu", "asthma", "diabetes", "none", "migraine"], rows),
        }
    )


@pytest.fixture
def dataset(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    content = people().to_csv(index=False).encode()
    response = client.post(
        "/datasets",
        data={"name": "people", "policy": json.dumps(POLICY)},
        files={"file": ("people.csv", content, "text/csv")},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def microdata_agreement(
    client: TestClient, admin: dict[str, str], partner: str, dataset: str, **release: Any
) -> dict[str, Any]:
    return make_agreement(
        client, admin, partner, dataset, release={**RELEASE, **release}, limits={}
    )


def download(client: TestClient, headers: dict[str, str], extract_id: str) -> pd.DataFrame:
    response = client.get(f"/extracts/{extract_id}/download", headers=headers)
    assert response.status_code == 200, response.text
    return pd.read_csv(io.BytesIO(response.content), dtype=str, keep_default_na=False)


def pycanon(table: pd.DataFrame, tmp_path: Path) -> dict[str, float]:
    """k and l of the released table by pycanon, an independent implementation."""
    path = tmp_path / "released.csv"
    table.to_csv(path, index=False)
    script = ROOT / "tests" / "anonymization" / "pycanon_check.py"
    output = subprocess.run(
        [str(PYCANON), str(script), str(path), "age,departement", "diagnosis"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, float] = json.loads(output.stdout)
    return result


def test_microdata_journey_release_checked_independently(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
    tmp_path: Path,
) -> None:
    lab = make_partner("Lab")
    agreement = microdata_agreement(client, admin, lab["id"], dataset["id"])
    assert agreement["release"]["kind"] == "microdata"
    assert "pseudonym_key" not in json.dumps(agreement)
    with app.state.sessionmaker() as session:
        stored = session.get(Agreement, uuid.UUID(agreement["id"]))
        assert stored is not None and stored.kind == "microdata"
        secret = agreements.pseudonym_secret(app.state.store, stored)
        assert len(secret) == 32 and secret not in stored.pseudonym_key  # type: ignore[operator]

    decision = client.post(
        f"/agreements/{agreement['id']}/decisions", json=MICRODATA, headers=lab["headers"]
    )
    assert decision.status_code == 200, decision.text
    assert decision.json()["permit"] is True
    assert decision.json()["plan"]["kind"] == "microdata"

    done = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert done["status"] == "succeeded", (done["failure_code"], done["failure"])
    table = download(client, lab["headers"], done["id"])
    assert list(table.columns) == ["person_id", "age", "departement", "diagnosis"]
    source = people()
    text = table.to_csv(index=False)
    assert not any(name in text for name in source["name"])
    assert not set(table["person_id"]) & set(source["person_id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in table["person_id"])
    assert table["person_id"].is_unique
    expected = pseudonymize(source["person_id"], agreement_key(secret, agreement["id"]))
    assert set(table["person_id"]) <= set(expected)

    sizes = table.groupby(["age", "departement"]).size()
    assert sizes.min() >= 5
    assert table.groupby(["age", "departement"])["diagnosis"].nunique().min() >= 2
    if PYCANON.exists():
        measured = pycanon(table, tmp_path)
        assert measured["k"] >= 5 and measured["l"] >= 2

    manifest = client.get(f"/extracts/{done['id']}/manifest", headers=lab["headers"]).json()
    assert manifest["kind"] == "microdata"
    assert manifest["agreement"] == {"id": agreement["id"], "version": 1}
    assert set(manifest["node"]) == {"age", "departement"}
    assert manifest["records_released"] == len(table)
    assert manifest["records_released"] + manifest["records_suppressed"] == 400
    assert manifest["records_suppressed"] <= 0.05 * 400
    assert manifest["risk"]["prosecutor_highest"] <= 1 / 5
    assert manifest["utility"] and manifest["measured"]["k"] == int(sizes.min())
    (tmp_path / "release.csv").write_bytes(
        client.get(f"/extracts/{done['id']}/download", headers=lab["headers"]).content
    )
    jwks = client.get("/.well-known/jwks.json").json()
    assert verify_release(manifest, jwks, tmp_path / "release.csv")[1] == "csv"
    produced = client.get("/audit", params={"action": "release.produced"}, headers=admin).json()
    assert produced["items"][0]["details"]["records"] == len(table)


def test_two_partners_pseudonyms_never_match_and_versions_keep_theirs(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
) -> None:
    first, second = make_partner("First lab"), make_partner("Second lab")
    # k = 2 without suppression releases every record, so each subject appears in both releases.
    one = {"protection": {"k": 2}}
    a = microdata_agreement(client, admin, first["id"], dataset["id"], **one)
    b = microdata_agreement(client, admin, second["id"], dataset["id"], **one)
    released_a = download(
        client,
        first["headers"],
        request_and_wait(client, first["headers"], a["id"], MICRODATA)["id"],
    )
    released_b = download(
        client,
        second["headers"],
        request_and_wait(client, second["headers"], b["id"], MICRODATA)["id"],
    )
    assert len(released_a) == len(released_b) == 400
    assert not set(released_a["person_id"]) & set(released_b["person_id"])

    body = {
        "version": 1,
        **{k: v for k, v in a.items() if k in ("purpose", "legal_basis", "retention_days")},
        "valid_from": a["valid_from"],
        "valid_until": a["valid_until"],
        "release": {**RELEASE, "protection": {"k": 2}, "formats": ["csv"]},
        "limits": {},
    }
    updated = client.put(f"/agreements/{a['id']}", json=body, headers=admin)
    assert updated.status_code == 200, updated.text
    again = request_and_wait(client, first["headers"], a["id"], MICRODATA)
    assert again["agreement_version"] == 2
    released_again = download(client, first["headers"], again["id"])
    assert set(released_again["person_id"]) == set(released_a["person_id"])

    with app.state.sessionmaker() as session:
        keys = [
            agreements.pseudonym_secret(app.state.store, session.get_one(Agreement, uuid.UUID(x)))
            for x in (a["id"], b["id"])
        ]
    assert keys[0] != keys[1]


@settings(max_examples=200, deadline=None)
@given(subjects=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30, unique=True))
def test_pseudonyms_of_two_agreements_share_nothing(subjects: list[str]) -> None:
    # Two agreements' keys as the service makes them: a random secret each, bound to the id.
    keys = [agreement_key(np.random.bytes(32), str(uuid.uuid4())) for _ in range(2)]
    first, second = (pseudonymize(subjects, key) for key in keys)
    assert not set(first) & set(second)
    assert len(set(first)) == len(subjects)


def test_another_partner_cannot_see_or_request_microdata(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    owner, other = make_partner("Owner"), make_partner("Other")
    agreement = microdata_agreement(client, admin, owner["id"], dataset["id"])
    done = request_and_wait(client, owner["headers"], agreement["id"], MICRODATA)
    for path in ("decisions", "extracts"):
        refused = client.post(
            f"/agreements/{agreement['id']}/{path}", json=MICRODATA, headers=other["headers"]
        )
        assert refused.status_code == 404, path
    for suffix in ("", "/download", "/manifest"):
        response = client.get(f"/extracts/{done['id']}{suffix}", headers=other["headers"])
        assert response.status_code == 404, suffix
    assert client.get("/extracts", headers=other["headers"]).json() == []
    assert client.get(f"/agreements/{agreement['id']}", headers=other["headers"]).status_code == 404


BAD_RELEASES = [
    ({"quasi_identifiers": {"sex": {}}}, "release.quasi_identifiers.sex.hierarchy"),
    ({"quasi_identifiers": {"nope": {"hierarchy": "age_bands"}}}, "release.quasi_identifiers.nope"),
    ({"quasi_identifiers": {"name": {"hierarchy": "age_bands"}}}, "release.quasi_identifiers.name"),
    ({"sensitive": ["person_id"]}, "release.sensitive.0"),
    ({"pseudonym": "sha256"}, "release.pseudonym"),
    (
        {"quasi_identifiers": {"age": {"hierarchy": "iris_x"}}},
        "release.quasi_identifiers.age.hierarchy",
    ),
    ({"protection": {"k": 0}}, "release.protection.k"),
    ({"protection": {"k": 1}}, "release.protection.k"),
    ({"protection": {"k": 5, "l": {"l": 1}}}, "release.protection.l.l"),
    ({"protection": {"k": 10**30}}, "release.protection.k"),
    ({"protection": {"k": 5, "l": {"l": 2**63}}}, "release.protection.l.l"),
    ({"risk": {"population": 10**30}}, "release.risk.population"),
    ({"algorithm": "greedy"}, "release.algorithm"),
    (
        {"protection": {"k": 2, "t": {"max": 0.2, "distance": "hierarchical"}}},
        "release.protection.t.distance",
    ),
]


@pytest.mark.parametrize(("change", "field"), BAD_RELEASES)
def test_bad_microdata_policies_are_422_naming_the_field(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_partner: Callable[[str], dict[str, Any]],
    change: dict[str, Any],
    field: str,
) -> None:
    partner = make_partner("Lab")
    body = {
        "partner_id": partner["id"],
        "dataset_id": dataset["id"],
        "purpose": "Research on health",
        "legal_basis": "public_task",
        "valid_from": "2025-01-01",
        "valid_until": "2030-12-31",
        "release": {**RELEASE, **change},
    }
    response = client.post("/agreements", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()
    if field == "release.pseudonym":
        assert "plain hashing is refused" in response.json()["detail"]
    limited = client.post(
        "/agreements", json={**body, "release": RELEASE, "limits": {"max_cells": 10}}, headers=admin
    )
    assert (limited.status_code, limited.json()["field"]) == (422, "limits.max_cells")


def test_kinds_do_not_mix_and_inactive_agreements_refuse(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    lab = make_partner("Lab")
    micro = microdata_agreement(client, admin, lab["id"], dataset["id"])
    aggregate = make_agreement(client, admin, lab["id"], make_dataset()["id"])
    cells = {"group_by": {"departement": "departement"}, "measures": ["subjects"]}
    for agreement_id, request in ((micro["id"], cells), (aggregate["id"], MICRODATA)):
        refused = client.post(
            f"/agreements/{agreement_id}/extracts", json=request, headers=lab["headers"]
        )
        assert refused.status_code == 403, refused.text
        assert [(r["code"], r["field"]) for r in refused.json()["reasons"]] == [
            ("wrong_kind", "kind")
        ]
    wrong_format = {"kind": "microdata", "format": "xlsx"}
    response = client.post(
        f"/agreements/{micro['id']}/extracts", json=wrong_format, headers=lab["headers"]
    )
    assert (response.status_code, response.json()["field"]) == (422, "format")

    body = {
        "version": 1,
        "purpose": "Research",
        "legal_basis": "public_task",
        "valid_from": "2025-01-01",
        "valid_until": "2030-12-31",
        "release": {"dimensions": {"departement": "departement"}, "protection": {"k": 5}},
    }
    changed = client.put(f"/agreements/{micro['id']}", json=body, headers=admin)
    assert (changed.status_code, changed.json()["field"]) == (422, "release.kind")

    for action, code in (("suspend", "agreement_suspended"), ("revoke", "agreement_revoked")):
        assert client.post(f"/agreements/{micro['id']}/{action}", headers=admin).status_code == 200
        refused = client.post(
            f"/agreements/{micro['id']}/extracts", json=MICRODATA, headers=lab["headers"]
        )
        assert refused.status_code == 403
        assert refused.json()["reasons"][0]["code"] == code


def test_impossible_policy_and_repeated_subjects_fail_the_job_with_the_reason(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    lab = make_partner("Lab")
    impossible = {"protection": {"k": 1000, "suppression_limit": 0.0}}
    agreement = microdata_agreement(client, admin, lab["id"], dataset["id"], **impossible)
    failed = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert failed["status"] == "failed"
    assert failed["failure_code"] == "no_solution"
    assert (
        "best node found" in failed["failure"] and "would suppress 400 of 400" in failed["failure"]
    )
    response = client.get(f"/extracts/{failed['id']}/download", headers=lab["headers"])
    assert (response.status_code, response.json()["error"]) == (409, "failed")

    # The payments dataset has several payments per card: k would count payments, not cards.
    payments = make_dataset()
    release = {
        "kind": "microdata",
        "quasi_identifiers": {"age": {}},
        "protection": {"k": 2},
    }
    repeated = make_agreement(client, admin, lab["id"], payments["id"], release=release)
    failed = request_and_wait(client, lab["headers"], repeated["id"], MICRODATA)
    assert (failed["status"], failed["failure_code"]) == ("failed", "subject_repeated")


def test_quota_idempotency_and_key_rotation(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_partner: Callable[[str], dict[str, Any]],
    app: FastAPI,
) -> None:
    lab = make_partner("Lab")
    agreement = make_agreement(
        client,
        admin,
        lab["id"],
        dataset["id"],
        release=RELEASE,
        limits={"extracts_per_month": 1},
    )
    path = f"/agreements/{agreement['id']}/extracts"
    headers = {**lab["headers"], "Idempotency-Key": "one"}
    first = client.post(path, json=MICRODATA, headers=headers)
    assert first.status_code == 202
    assert client.post(path, json=MICRODATA, headers=headers).json()["id"] == first.json()["id"]
    other = client.post(path, json={**MICRODATA, "format": "json"}, headers=headers)
    assert other.status_code == 409
    assert client.post(path, json=MICRODATA, headers=lab["headers"]).status_code == 429

    store = app.state.store
    with app.state.sessionmaker() as session:
        stored = session.get_one(Agreement, uuid.UUID(agreement["id"]))
        before = agreements.pseudonym_secret(store, stored)
        store.keys.add()
        assert agreements.rewrap_pseudonym_keys(session, store) == 1
        session.commit()
    store.keys.retire_all_but_current()
    with app.state.sessionmaker() as session:
        stored = session.get_one(Agreement, uuid.UUID(agreement["id"]))
        assert agreements.pseudonym_secret(store, stored) == before


def test_migration_0005_goes_down_and_up(database_url: str) -> None:
    config = alembic_config(database_url)

    def columns() -> set[str]:
        engine = make_engine(database_url)
        try:
            return {c["name"] for c in inspect(engine).get_columns("agreement")}
        finally:
            engine.dispose()

    added = {"kind", "pseudonym_key_id", "pseudonym_key"}
    assert added <= columns()
    command.downgrade(config, "0004")
    try:
        assert not added & columns()
    finally:
        command.upgrade(config, "head")
    assert added <= columns()


def test_values_a_hierarchy_does_not_cover_are_told_to_administrators_only(
    client: TestClient,
    admin: dict[str, str],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    # A quasi-identifier may use another hierarchy than its column's, checked against the data
    # only when the job runs. The values it misses are raw data (here the oldest people, the
    # rarest ages): the partner is told which column failed, the audit log names the values.
    ages = "".join(f"{age};{age // 10 * 10}s;*\n" for age in range(18, 80)).encode()
    policy = {**POLICY, "hierarchies": {**POLICY["hierarchies"], "ages_arx": "ages.csv"}}
    files = [
        ("file", ("people.csv", people().to_csv(index=False).encode(), "text/csv")),
        ("hierarchy_files", ("ages.csv", ages)),
    ]
    form = {"name": "people", "policy": json.dumps(policy)}
    registered = client.post("/datasets", data=form, files=files, headers=admin)
    assert registered.status_code == 201, registered.text
    lab = make_partner("Lab")
    qis = {"age": {"hierarchy": "ages_arx"}, "departement": {}}
    agreement = microdata_agreement(
        client, admin, lab["id"], registered.json()["id"], quasi_identifiers=qis
    )
    failed = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert (failed["status"], failed["failure_code"]) == ("failed", "value_not_covered")
    assert "'age'" in failed["failure"]
    uncovered = sorted(set(people()["age"]) - {str(age) for age in range(18, 80)})
    assert uncovered
    assert not any(f"'{value}'" in failed["failure"] for value in uncovered), failed["failure"]
    events = client.get("/audit", params={"action": "release.failed"}, headers=admin).json()
    logged = events["items"][-1]["details"]["detail"]
    assert f"'{uncovered[0]}'" in logged

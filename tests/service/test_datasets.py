"""``/datasets``: checks against the data, encryption at rest, deletion rules, upload limits."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.datasets import service
from service.datasets.models import Dataset
from service.keys import StorageKeys
from service.storage import StorageError
from tests.service.factories import (
    POLICY,
    agreement_body,
    csv_bytes,
    dataset_form,
    parquet_bytes,
    payments_frame,
)


def _upload(
    client: TestClient,
    admin: dict[str, str],
    content: bytes,
    policy: dict[str, Any] | None = None,
    filename: str = "data.csv",
) -> Any:
    files = {"file": (filename, content, "application/octet-stream")}
    return client.post("/datasets", data=dataset_form(policy=policy), files=files, headers=admin)


def test_register_records_rows_schema_fingerprint_and_encrypts_at_rest(
    client: TestClient, admin: dict[str, str], app: FastAPI
) -> None:
    content = csv_bytes(payments_frame())
    response = _upload(client, admin, content)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["row_count"] == 40
    assert body["file_format"] == "csv"
    assert body["fingerprint"] == "sha256:" + hashlib.sha256(content).hexdigest()
    assert body["columns"]["amount"] == "number"
    assert body["columns"]["date"] == "date"
    assert body["columns"]["departement"] == "text"
    stored = list((app.state.settings.data_dir / "datasets").glob("*.bin"))
    assert len(stored) == 1
    raw = stored[0].read_bytes()
    assert b"card_id" not in raw and b"Holder" not in raw
    with app.state.sessionmaker() as session:
        dataset = session.get(Dataset, uuid.UUID(body["id"]))
        assert service.read_content(app.state.store, dataset) == content
    assert client.get(f"/datasets/{body['id']}", headers=admin).json() == body
    assert [d["id"] for d in client.get("/datasets", headers=admin).json()] == [body["id"]]


def test_parquet_upload_keeps_codes_as_text(client: TestClient, admin: dict[str, str]) -> None:
    response = _upload(client, admin, parquet_bytes(payments_frame()), filename="p.parquet")
    assert response.status_code == 201, response.text
    assert response.json()["file_format"] == "parquet"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "nobody"}, "dataset.subject"),
        ({"identifiers": ["iban"]}, "dataset.identifiers.0"),
        ({"columns": {"shoe_size": {}}}, "dataset.columns.shoe_size"),
    ],
)
def test_roles_naming_absent_columns_are_422(
    client: TestClient, admin: dict[str, str], change: dict[str, Any], field: str
) -> None:
    policy = {**POLICY, "dataset": {**POLICY["dataset"], **change}}
    response = _upload(client, admin, csv_bytes(payments_frame()), policy)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_uncovered_hierarchy_values_are_422_with_the_values(
    client: TestClient, admin: dict[str, str]
) -> None:
    frame = payments_frame()
    frame.loc[3, "departement"] = "99"
    frame.loc[5, "departement"] = "6"
    response = _upload(client, admin, csv_bytes(frame))
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "dataset.columns.departement"
    assert "'6'" in body["detail"] and "'99'" in body["detail"]


def test_unparsable_file_is_422_naming_the_line(client: TestClient, admin: dict[str, str]) -> None:
    content = csv_bytes(payments_frame()) + b"c1,x,01,2025-01-01,30,DE,1.0,EXTRA\n"
    response = _upload(client, admin, content)
    assert response.status_code == 422
    assert "line 42" in response.json()["detail"]
    not_numbers = payments_frame()
    not_numbers.loc[0, "amount"] = "lots"
    response = _upload(client, admin, csv_bytes(not_numbers))
    assert response.status_code == 422
    assert response.json()["field"] == "dataset.columns.amount"
    assert "lines 2" in response.json()["detail"]


def test_bad_policy_json_is_422_naming_the_field(client: TestClient, admin: dict[str, str]) -> None:
    files = {"file": ("d.csv", csv_bytes(payments_frame()), "text/csv")}
    response = client.post(
        "/datasets", data={"name": "x", "policy": "{not json"}, files=files, headers=admin
    )
    assert (response.status_code, response.json()["field"]) == (422, "policy")
    bad = json.dumps({"dataset": {"subject": "card_id", "columns": {"age": {"type": "nope"}}}})
    response = client.post(
        "/datasets", data={"name": "x", "policy": bad}, files=files, headers=admin
    )
    assert response.status_code == 422
    assert response.json()["field"].startswith("dataset.columns.age")


def test_upload_over_the_limit_is_413(client: TestClient, admin: dict[str, str]) -> None:
    big = b"x" * (3 * 1024 * 1024)
    response = _upload(client, admin, big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_delete_refused_while_an_agreement_is_live(
    client: TestClient,
    admin: dict[str, str],
    make_dataset,
    make_partner,
    app: FastAPI,  # type: ignore[no-untyped-def]
) -> None:
    dataset = make_dataset()
    partner = make_partner("Partner")
    agreement = client.post(
        "/agreements", json=agreement_body(partner["id"], dataset["id"]), headers=admin
    ).json()
    refused = client.delete(f"/datasets/{dataset['id']}", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["error"] == "dataset_in_use"
    client.post(f"/agreements/{agreement['id']}/revoke", headers=admin)
    assert client.delete(f"/datasets/{dataset['id']}", headers=admin).status_code == 204
    assert client.get(f"/datasets/{dataset['id']}", headers=admin).status_code == 404
    assert not list((app.state.settings.data_dir / "datasets").glob("*.bin"))
    assert client.get(f"/agreements/{agreement['id']}", headers=admin).status_code == 200


def test_storage_key_rotation_rewraps_and_old_key_can_go(
    client: TestClient,
    make_dataset,
    app: FastAPI,  # type: ignore[no-untyped-def]
) -> None:
    body = make_dataset()
    keys = StorageKeys(app.state.settings.keys_dir)
    old_kid, _ = keys.current()
    keys.add()
    with app.state.sessionmaker() as session:
        assert service.rewrap_all(session, app.state.store) == 1
        session.commit()
    assert keys.retire_all_but_current() == [old_kid]
    with app.state.sessionmaker() as session:
        dataset = session.get(Dataset, uuid.UUID(body["id"]))
        assert dataset.key_id != old_kid
        assert service.read_content(app.state.store, dataset).startswith(b"card_id")


def test_tampered_file_does_not_decrypt(client: TestClient, make_dataset, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    body = make_dataset()
    path = app.state.settings.data_dir / "datasets" / f"{body['id']}.bin"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with app.state.sessionmaker() as session:
        dataset = session.get(Dataset, uuid.UUID(body["id"]))
        with pytest.raises(StorageError):
            service.read_content(app.state.store, dataset)

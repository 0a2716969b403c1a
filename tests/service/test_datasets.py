"""``/datasets``: checks against the data, encryption at rest, deletion rules, upload limits."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from anonymization.errors import DataError
from service.datasets import service
from service.datasets.models import Dataset
from service.datasets.reading import check_table, read_table
from service.datasets.schemas import DatasetPolicy
from service.db import make_engine
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
    frame = payments_frame().astype({"amount": "float64"})
    response = _upload(client, admin, parquet_bytes(frame), filename="p.parquet")
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


def test_streamed_upload_over_the_limit_is_413(client: TestClient, admin: dict[str, str]) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * (100 * 1024)

    headers = {**admin, "Content-Type": "multipart/form-data; boundary=b"}
    response = client.post("/datasets", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def arx_ages() -> bytes:
    rows = [f"{age};{age // 10 * 10}-{age // 10 * 10 + 9};*" for age in range(0, 100)]
    return "\n".join(rows).encode()


def test_arx_hierarchy_files_are_uploaded_with_the_dataset(
    client: TestClient, admin: dict[str, str]
) -> None:
    policy = {
        **POLICY,
        "hierarchies": {"age_bands": {"file": "ages.csv", "levels": ["age", "decade"]}},
    }
    content = csv_bytes(payments_frame())
    form = dataset_form(policy=policy)
    missing = client.post("/datasets", data=form, files={"file": ("d.csv", content)}, headers=admin)
    assert (missing.status_code, missing.json()["field"]) == (422, "hierarchy_files")
    files = [("file", ("d.csv", content)), ("hierarchy_files", ("ages.csv", arx_ages()))]
    response = client.post("/datasets", data=form, files=files, headers=admin)
    assert response.status_code == 201, response.text
    partner = client.post("/partners", json={"name": "P"}, headers=admin).json()
    release = {"dimensions": {"age": "decade"}, "protection": {"k": 3}}
    body = agreement_body(partner["partner"]["id"], response.json()["id"], release=release)
    assert client.post("/agreements", json=body, headers=admin).status_code == 201
    too_fine = {**body, "release": {**release, "dimensions": {"age": "year"}}}
    refused = client.post("/agreements", json=too_fine, headers=admin)
    assert (refused.status_code, refused.json()["field"]) == (422, "release.dimensions.age")


def test_hierarchy_file_paths_cannot_escape(client: TestClient, admin: dict[str, str]) -> None:
    policy = {**POLICY, "hierarchies": {"age_bands": "../../ages.csv"}}
    files = [
        ("file", ("d.csv", csv_bytes(payments_frame()))),
        ("hierarchy_files", ("ages.csv", arx_ages())),
    ]
    response = client.post(
        "/datasets", data=dataset_form(policy=policy), files=files, headers=admin
    )
    assert (response.status_code, response.json()["field"]) == (422, "hierarchies")


def test_register_from_a_sql_table(
    client: TestClient, admin: dict[str, str], database_url: str
) -> None:
    table = f"payments_{uuid.uuid4().hex[:8]}"
    engine = make_engine(database_url)
    payments_frame().to_sql(f"{table}_text", engine, index=False)
    payments_frame().astype({"amount": "float64"}).to_sql(table, engine, index=False)
    try:
        source = {"url": database_url, "table": f"{table}_text"}
        body = {"name": "from sql", "policy": POLICY, "source": source}
        refused = client.post("/datasets/sql", json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "dataset.columns.amount"
        source = {"url": database_url, "table": table}
        body = {**body, "source": source}
        response = client.post("/datasets/sql", json=body, headers=admin)
        assert response.status_code == 201, response.text
        assert response.json()["row_count"] == 40
        assert response.json()["columns"]["amount"] == "number"
        missing = {**body, "name": "other", "source": {**source, "table": "nope"}}
        refused = client.post("/datasets/sql", json=missing, headers=admin)
        assert (refused.status_code, refused.json()["field"]) == (422, "source.table")
        bad_url = {**body, "name": "other", "source": {**source, "url": "nonsense"}}
        refused = client.post("/datasets/sql", json=bad_url, headers=admin)
        assert (refused.status_code, refused.json()["field"]) == (422, "source.url")
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE {table}"))
            connection.execute(text(f"DROP TABLE {table}_text"))
        engine.dispose()


def test_time_values_in_mixed_time_zones_are_422_naming_the_column(
    client: TestClient, admin: dict[str, str]
) -> None:
    frame = payments_frame(3)
    frame["date"] = ["2025-01-01T10:00:00+02:00", "2025-01-01T10:00:00", "2025-01-01"]
    response = _upload(client, admin, csv_bytes(frame))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "dataset.columns.date"
    assert "time zone" in body["detail"] and "+02:00" in body["detail"]


@pytest.mark.parametrize("bands", [[1e-300, 1e308], [1, "Infinity"], [5, 1e300]])
def test_band_widths_that_cannot_label_values_are_422_naming_the_hierarchy(
    client: TestClient, admin: dict[str, str], bands: list[Any]
) -> None:
    policy = {**POLICY, "hierarchies": {"age_bands": {"bands": bands}}}
    files = {"file": ("d.csv", csv_bytes(payments_frame()), "text/csv")}
    form = {"name": "x", "policy": json.dumps(policy).replace('"Infinity"', "Infinity")}
    response = client.post("/datasets", data=form, files=files, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "hierarchies.age_bands.bands"


ZONES = ["", "Z", "+02:00", "-05:00"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 23), st.sampled_from(ZONES)), min_size=1, max_size=8))
def test_times_are_refused_exactly_when_in_several_time_zones(
    times: list[tuple[int, str]],
) -> None:
    """Whatever the mix of offsets, the check says `date` or names the column; never a 500."""
    policy = DatasetPolicy.model_validate(
        {"dataset": {"subject": "id", "columns": {"d": {"hierarchy": "time"}}}}
    )
    values = [f"2025-03-01T{hour:02d}:30:00{zone}" for hour, zone in times]
    frame = pd.DataFrame({"id": [str(i) for i in range(len(values))], "d": values}, dtype="string")
    if len({zone for _, zone in times}) == 1:
        assert check_table(frame, policy, {})["d"] == "date"
        return
    with pytest.raises(DataError, match="time zone") as raised:
        check_table(frame, policy, {})
    assert raised.value.field == "dataset.columns.d"


@pytest.mark.parametrize(
    ("column", "value"),
    [("amount", "inf"), ("amount", "-Infinity"), ("amount", "1e400"), ("age", "inf")],
)
def test_non_finite_numbers_are_422_naming_the_column(
    client: TestClient, admin: dict[str, str], column: str, value: str
) -> None:
    frame = payments_frame()
    frame.loc[4, column] = value
    response = _upload(client, admin, csv_bytes(frame))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == f"dataset.columns.{column}"
    assert repr(value) in body["detail"] and "lines 6" in body["detail"]


def test_parquet_measures_stored_as_text_are_422_naming_the_type(
    client: TestClient, admin: dict[str, str]
) -> None:
    content = parquet_bytes(payments_frame())  # every column as text, `amount` included
    response = _upload(client, admin, content, filename="p.parquet")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "dataset.columns.amount"
    assert "string" in body["detail"]
    numbers = payments_frame().astype({"amount": "float64"})
    amounts = numbers["amount"].to_list()
    amounts[7] = float("nan")
    table = pa.Table.from_pandas(numbers.drop(columns="amount"), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table.append_column("amount", pa.array(amounts, pa.float64())), buffer)
    response = _upload(client, admin, buffer.getvalue(), filename="p.parquet")
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "dataset.columns.amount"
    numbers.loc[7, "amount"] = None
    response = _upload(client, admin, parquet_bytes(numbers), filename="p.parquet")
    assert response.status_code == 201, response.text


def _stored(app: FastAPI) -> list[Any]:
    return list((app.state.settings.data_dir / "datasets").glob("*"))


def test_a_name_taken_after_the_check_is_409_on_name_and_leaves_no_file(
    client: TestClient, admin: dict[str, str], app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads with one name race: the one that loses gets 409 on `name`, its file is gone."""
    checked = service.check_table

    def competitor_registers_meanwhile(*args: Any) -> Any:
        monkeypatch.setattr(service, "check_table", checked)
        with app.state.sessionmaker() as session:
            content = csv_bytes(payments_frame())
            service.create(
                session,
                app.state.store,
                "other",
                "payments",
                None,
                DatasetPolicy.model_validate(POLICY),
                "d.csv",
                content,
                {},
            )
            session.commit()
        return checked(*args)

    monkeypatch.setattr(service, "check_table", competitor_registers_meanwhile)
    response = _upload(client, admin, csv_bytes(payments_frame()))
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "name"
    with app.state.sessionmaker() as session:
        (only,) = session.scalars(select(Dataset)).all()
    assert [path.name for path in _stored(app)] == [f"{only.id}.bin"]


def test_a_failing_commit_after_the_write_leaves_no_file(
    client: TestClient, admin: dict[str, str], app: FastAPI
) -> None:
    def fail(session: Session) -> None:
        if any(isinstance(found, Dataset) for found in session.identity_map.values()):
            raise RuntimeError("the database went away")

    event.listen(Session, "before_commit", fail)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            _upload(client, admin, csv_bytes(payments_frame()))
    finally:
        event.remove(Session, "before_commit", fail)
    assert not [path for path in _stored(app) if path.suffix in (".bin", ".partial")]
    assert client.get("/datasets", headers=admin).json() == []


def test_concurrent_uploads_with_one_name_leave_one_dataset_and_one_file(
    client: TestClient, admin: dict[str, str], app: FastAPI
) -> None:
    content = csv_bytes(payments_frame(2000))
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: _upload(client, admin, content), range(4)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409], [r.text for r in responses]
    assert {r.json()["field"] for r in responses if r.status_code == 409} == {"name"}
    created = next(r.json() for r in responses if r.status_code == 201)
    assert [path.name for path in _stored(app)] == [f"{created['id']}.bin"]


def test_a_line_with_too_many_fields_is_422_naming_the_line(
    client: TestClient, admin: dict[str, str]
) -> None:
    header, first, *rest = csv_bytes(payments_frame()).decode().splitlines()
    content = "\n".join([header, first + ",EXTRA", *rest]).encode()
    response = _upload(client, admin, content)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "file"
    assert "line 2" in body["detail"] and "8 fields" in body["detail"]


def test_an_unknown_stored_level_is_422_naming_the_column_level(
    client: TestClient, admin: dict[str, str]
) -> None:
    columns = {
        **POLICY["dataset"]["columns"],
        "departement": {"hierarchy": "geo_fr", "level": "planet"},
    }
    policy = {**POLICY, "dataset": {**POLICY["dataset"], "columns": columns}}
    response = _upload(client, admin, csv_bytes(payments_frame()), policy)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "dataset.columns.departement.level"


@pytest.mark.parametrize("text", ["[]", "1", '"policy"', "null"])
def test_a_policy_that_is_not_an_object_is_422_naming_policy(
    client: TestClient, admin: dict[str, str], text: str
) -> None:
    files = {"file": ("d.csv", csv_bytes(payments_frame()), "text/csv")}
    response = client.post(
        "/datasets", data={"name": "x", "policy": text}, files=files, headers=admin
    )
    assert (response.status_code, response.json()["field"]) == (422, "policy")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.data())
def test_a_ragged_line_anywhere_is_refused_naming_it(rows: int, data: st.DataObject) -> None:
    """Whichever line has extra fields, the error names it; values are never shifted."""
    position = data.draw(st.integers(0, rows - 1))
    extra = data.draw(st.integers(1, 3))
    lines = ["id,dep,amt", *(f"s{i},74,{i}" for i in range(rows))]
    lines[position + 1] += ",x" * extra
    with pytest.raises(DataError) as raised:
        read_table("\n".join(lines).encode(), "csv")
    assert raised.value.field == "file"
    assert f"line {position + 2}" in raised.value.detail

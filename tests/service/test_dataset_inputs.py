"""Hostile inputs to dataset registration: SQL snapshots of types a snapshot cannot hold,
files whose columns are ambiguous or nested. Each is a 422 naming the field, and nothing stays."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.datasets.models import Dataset
from service.db import make_engine

SIMPLE: dict[str, Any] = {
    "dataset": {"subject": "s", "columns": {"d": {}, "m": {"type": "measure"}}}
}


def _datasets(app: FastAPI) -> int:
    with app.state.sessionmaker() as session:
        return session.query(Dataset).count()


def _data_files(app: FastAPI) -> list[str]:
    folder = app.state.settings.data_dir
    return [path.name for path in folder.rglob("*") if path.is_file()]


@contextmanager
def _source_table(url: str, columns: str, *inserts: str) -> Iterator[str]:
    """A throwaway table on the PostgreSQL server (``columns``: its SQL column list; each of
    ``inserts``: a VALUES list), dropped afterwards."""
    table = f"source_{uuid.uuid4().hex[:8]}"
    source = make_engine(url)
    with source.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} ({columns})"))
        for values in inserts:
            connection.execute(text(f"INSERT INTO {table} VALUES {values}"))
    try:
        yield table
    finally:
        with source.begin() as connection:
            connection.execute(text(f"DROP TABLE {table}"))
        source.dispose()


def _refused_snapshot(
    client: TestClient, admin: dict[str, str], app: FastAPI, url: str, table: str
) -> dict[str, Any]:
    """The 422 error of ``POST /datasets/sql`` on ``table``; nothing was stored."""
    body = {"name": "hostile", "policy": SIMPLE, "source": {"url": url, "table": table}}
    response = client.post("/datasets/sql", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert _datasets(app) == 0 and _data_files(app) == []
    error: dict[str, Any] = response.json()
    return error


@pytest.mark.parametrize(
    ("declared", "value", "found"),
    [
        ("int4range", "'[1,3)'", "Range"),
        ("inet", "'10.0.0.1'", "IPv4Address"),
    ],
)
def test_a_sql_column_a_snapshot_cannot_hold_is_422_naming_it(
    client: TestClient,
    admin: dict[str, str],
    app: FastAPI,
    postgresql_url: str,
    declared: str,
    value: str,
    found: str,
) -> None:
    columns = f"s text, d text, m float8, x {declared}"
    with _source_table(postgresql_url, columns, f"('1', 'a', 1.0, {value})") as table:
        error = _refused_snapshot(client, admin, app, postgresql_url, table)
    assert (error["error"], error["field"]) == ("invalid_type", "source.table")
    assert "'x'" in error["detail"] and found in error["detail"]


def _upload(client: TestClient, admin: dict[str, str], filename: str, content: bytes) -> Any:
    form = {"name": "hostile", "policy": json.dumps(SIMPLE)}
    files = {"file": (filename, content, "application/octet-stream")}
    return client.post("/datasets", data=form, files=files, headers=admin)


def _parquet(columns: list[pa.Array], names: list[str]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, names=names), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("d.csv", b"s,d,d,m\n1,a,IBAN1,3\n"),
        ("d.csv", "\ufeffs,d,m,s\n1,a,3,2\n".encode()),
        (
            "d.parquet",
            _parquet(
                [pa.array(["1"]), pa.array(["a"]), pa.array(["b"]), pa.array([1.0])],
                ["s", "d", "d", "m"],
            ),
        ),
    ],
)
def test_a_column_named_twice_is_422_naming_it(
    client: TestClient, admin: dict[str, str], app: FastAPI, filename: str, content: bytes
) -> None:
    response = _upload(client, admin, filename, content)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("duplicate_column", "file")
    assert "appear more than once" in error["detail"]
    assert _datasets(app) == 0 and _data_files(app) == []


NESTED = {
    "list": pa.array([[1, 2], [3]]),
    "struct": pa.array([{"x": 1}, {"x": 2}]),
    "map": pa.array([[("k", 1)], [("k", 2)]], pa.map_(pa.string(), pa.int64())),
}


@pytest.mark.parametrize("kind", sorted(NESTED))
@pytest.mark.parametrize(
    ("column", "field"), [("s", "dataset.subject"), ("d", "dataset.columns.d")]
)
def test_a_nested_column_the_policy_names_is_422_naming_it(
    client: TestClient, admin: dict[str, str], app: FastAPI, kind: str, column: str, field: str
) -> None:
    columns = {"s": pa.array(["1", "2"]), "d": pa.array(["a", "b"]), "m": pa.array([1.0, 2.0])}
    columns[column] = NESTED[kind]
    response = _upload(client, admin, "d.parquet", _parquet(list(columns.values()), list(columns)))
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("invalid_type", field)
    assert f"'{column}' is stored as" in error["detail"]
    assert _datasets(app) == 0 and _data_files(app) == []


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("d.csv", b"s,d,m\n"),
        ("d.csv", b"\xef\xbb\xbfs,d,m\r\n"),
        (
            "d.parquet",
            _parquet(
                [pa.array([], pa.string())] * 2 + [pa.array([], pa.float64())], ["s", "d", "m"]
            ),
        ),
    ],
)
def test_a_file_with_a_header_and_no_rows_is_422(
    client: TestClient, admin: dict[str, str], app: FastAPI, filename: str, content: bytes
) -> None:
    # Registered, it would be an empty population every release of which is an empty table.
    response = _upload(client, admin, filename, content)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("no_rows", "file")
    assert _datasets(app) == 0 and _data_files(app) == []


def test_an_empty_sql_table_is_422(
    client: TestClient, admin: dict[str, str], app: FastAPI, postgresql_url: str
) -> None:
    with _source_table(postgresql_url, "s text, d text, m float8") as table:
        error = _refused_snapshot(client, admin, app, postgresql_url, table)
    assert (error["error"], error["field"]) == ("no_rows", "source.table")


@pytest.mark.parametrize("declared", ["float8", "real", "numeric"])
def test_a_sql_nan_is_422_not_a_missing_value(
    client: TestClient, admin: dict[str, str], app: FastAPI, postgresql_url: str, declared: str
) -> None:
    # pandas reads PostgreSQL's NaN as missing: the measure would have lost a value silently.
    rows = "('1', 'a', 1), ('2', 'a', 'NaN'), ('3', 'b', NULL)"
    with _source_table(postgresql_url, f"s text, d text, m {declared}", rows) as table:
        error = _refused_snapshot(client, admin, app, postgresql_url, table)
    assert (error["error"], error["field"]) == ("invalid_data", "source.table")
    assert "'m' holds 1 NaN" in error["detail"]

"""Hostile inputs to dataset registration: SQL snapshots of types a snapshot cannot hold,
files whose columns are ambiguous or nested. Each is a 422 naming the field, and nothing stays."""

from __future__ import annotations

import uuid
from typing import Any

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
    table = f"odd_{uuid.uuid4().hex[:8]}"
    source = make_engine(postgresql_url)
    with source.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} (s text, d text, m float8, x {declared})"))
        connection.execute(text(f"INSERT INTO {table} VALUES ('1', 'a', 1.0, {value})"))
    try:
        body = {
            "name": "odd types",
            "policy": SIMPLE,
            "source": {"url": postgresql_url, "table": table},
        }
        response = client.post("/datasets/sql", json=body, headers=admin)
        assert response.status_code == 422, response.text
        error = response.json()
        assert (error["error"], error["field"]) == ("invalid_type", "source.table")
        assert "'x'" in error["detail"] and found in error["detail"]
        assert _datasets(app) == 0 and _data_files(app) == []
    finally:
        with source.begin() as connection:
            connection.execute(text(f"DROP TABLE {table}"))
        source.dispose()

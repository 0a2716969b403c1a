"""Reviewer attacks on the SQL snapshot's NaN refusal: types reflected as something other than
a float, identifiers that need quoting."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.db import make_engine
from tests.service.test_dataset_inputs import _refused_snapshot


def _run(url: str, *statements: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def test_a_nan_behind_a_domain_over_float8_is_refused(
    client: TestClient, admin: dict[str, str], app: FastAPI, postgresql_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    domain, table = f"measure_{suffix}", f"source_{suffix}"
    _run(
        postgresql_url,
        f"CREATE DOMAIN {domain} AS float8",
        f"CREATE TABLE {table} (s text, d text, m {domain})",
        f"INSERT INTO {table} VALUES ('1', 'a', 1), ('2', 'a', 'NaN'), ('3', 'b', NULL)",
    )
    try:
        error = _refused_snapshot(client, admin, app, postgresql_url, table)
    finally:
        _run(postgresql_url, f"DROP TABLE {table}", f"DROP DOMAIN {domain}")
    assert (error["error"], error["field"]) == ("invalid_data", "source.table")
    assert "'m' holds 1 NaN" in error["detail"]


def test_a_table_name_that_needs_quoting_is_refused_before_any_query(
    client: TestClient, admin: dict[str, str], app: FastAPI, postgresql_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    schema, table = f'Odd"Schema {suffix}', f'Odd"Table; {suffix}'
    qs, qt = '"' + schema.replace('"', '""') + '"', '"' + table.replace('"', '""') + '"'
    _run(
        postgresql_url,
        f"CREATE SCHEMA {qs}",
        f'CREATE TABLE {qs}.{qt} (s text, d text, "M ""x" float8)',
        f"INSERT INTO {qs}.{qt} VALUES ('1', 'a', 1), ('2', 'a', 'NaN')",
    )
    try:
        error = _refused_snapshot(client, admin, app, postgresql_url, f"{schema}.{table}")
    finally:
        _run(postgresql_url, f"DROP SCHEMA {qs} CASCADE")
    # Only plain identifiers (schema.table) reach the database, read through SQLAlchemy.
    assert (error["error"], error["field"]) == ("invalid_request", "source.table")


def test_a_nan_behind_a_domain_over_a_domain_over_numeric_is_refused(
    client: TestClient, admin: dict[str, str], app: FastAPI, postgresql_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    inner, outer, table = f"amount_{suffix}", f"positive_{suffix}", f"Source_{suffix}"
    _run(
        postgresql_url,
        f"CREATE DOMAIN {inner} AS numeric",
        f"CREATE DOMAIN {outer} AS {inner}",
        f'CREATE TABLE "{table}" (s text, d text, m {outer})',
        f"INSERT INTO \"{table}\" VALUES ('1', 'a', 1), ('2', 'a', 'NaN')",
    )
    try:
        error = _refused_snapshot(client, admin, app, postgresql_url, f"public.{table}")
    finally:
        _run(
            postgresql_url, f'DROP TABLE "{table}"', f"DROP DOMAIN {outer}", f"DROP DOMAIN {inner}"
        )
    assert (error["error"], error["field"]) == ("invalid_data", "source.table")
    assert "'m' holds 1 NaN" in error["detail"]

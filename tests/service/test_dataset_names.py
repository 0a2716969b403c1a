"""Dataset names, as partners' are: checked like every name people type (no blank, no control
character), unique as people read them (case, spacing, Unicode form aside), deleted datasets
included; migration 0008 keys the datasets already registered and refuses names that clash."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import JSON, DateTime, Integer, String, Uuid, column, insert, inspect, table, update

from anonymization.errors import InvalidRequest
from policies.text import name_key
from service.cli_environment import migrate
from service.config import Settings
from service.db import make_engine
from service.migrate import alembic_config
from tests.service.factories import POLICY, csv_bytes, dataset_form, name_variants, payments_frame

ORIGINALS = ["Paiements par carte", "Consommation électrique", "Évry Énergie"]


def _register(client: TestClient, admin: dict[str, str], name: str) -> Any:
    files = {"file": ("payments.csv", csv_bytes(payments_frame()), "text/csv")}
    return client.post("/datasets", data=dataset_form(name), files=files, headers=admin)


def test_a_name_that_reads_as_an_existing_one_is_a_409(
    client: TestClient, admin: dict[str, str]
) -> None:
    for name in ORIGINALS:
        assert _register(client, admin, name).status_code == 201

    @given(name_variants(ORIGINALS))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(drawn: tuple[str, str]) -> None:
        name, variant = drawn
        response = _register(client, admin, variant)
        assert response.status_code == 409, (variant, response.text)
        assert (response.json()["error"], response.json()["field"]) == ("duplicate", "name")
        assert repr(name) in response.json()["detail"]

    refused()
    assert len(client.get("/datasets", headers=admin).json()) == len(ORIGINALS)


def test_names_are_stored_trimmed_and_composed_and_a_deleted_dataset_keeps_its_own(
    client: TestClient, admin: dict[str, str]
) -> None:
    created = _register(client, admin, "  E\u0301vry\u00a0")
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "Évry"
    assert client.delete(f"/datasets/{created.json()['id']}", headers=admin).status_code == 204
    again = _register(client, admin, "évry")
    assert (again.status_code, again.json()["field"]) == (409, "name")


@pytest.mark.parametrize("name", ["   ", "\u200b\u00a0", "a\u0000b", "line\nbreak", "x" * 201])
def test_blank_names_and_control_characters_are_422_naming_name(
    client: TestClient, admin: dict[str, str], name: str
) -> None:
    uploaded = _register(client, admin, name)
    source = {"url": "sqlite://", "table": "payments"}
    from_sql = client.post(
        "/datasets/sql", json={"name": name, "policy": POLICY, "source": source}, headers=admin
    )
    for response in (uploaded, from_sql):
        assert response.status_code == 422, response.text
        assert (response.json()["error"], response.json()["field"]) == ("invalid_request", "name")
    assert client.get("/datasets", headers=admin).json() == []


_DATASET = table(
    "dataset",
    column("id", Uuid()),
    column("name", String()),
    *(column(name, JSON()) for name in ("spec", "hierarchies", "hierarchy_files", "columns")),
    column("file_format", String()),
    column("fingerprint", String()),
    column("size_bytes", Integer()),
    column("row_count", Integer()),
    column("created_at", DateTime()),
)


def _registered_before_0008(url: str, names: list[str]) -> list[uuid.UUID]:
    """Datasets named ``names``, written while the database is at 0007."""
    command.downgrade(alembic_config(url), "0007")
    ids = [uuid.uuid4() for _ in names]
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    engine = make_engine(url)
    with engine.begin() as connection:
        for number, (dataset_id, name) in enumerate(zip(ids, names, strict=True)):
            empty: dict[str, Any] = {}
            values = dict.fromkeys(("spec", "hierarchies", "hierarchy_files", "columns"), empty)
            connection.execute(
                insert(_DATASET).values(
                    id=dataset_id,
                    name=name,
                    file_format="csv",
                    fingerprint="sha256:-",
                    size_bytes=0,
                    row_count=0,
                    created_at=start + datetime.timedelta(days=number),
                    **values,
                )
            )
    engine.dispose()
    return ids


def _name_keys(url: str) -> dict[str, str] | None:
    """Each dataset's name key, or None while the column does not exist."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if "name_key" not in {c["name"] for c in inspect(connection).get_columns("dataset")}:
                return None
            rows = connection.execute(table("dataset", column("name"), column("name_key")).select())
            return {str(name): str(key) for name, key in rows}
    finally:
        engine.dispose()


def test_migration_0008_keys_the_datasets_registered_before_it(own_database_url: str) -> None:
    _registered_before_0008(own_database_url, ORIGINALS)
    command.upgrade(alembic_config(own_database_url), "head")
    assert _name_keys(own_database_url) == {name: name_key(name) for name in ORIGINALS}


def test_migration_0008_refuses_names_that_read_the_same_until_one_is_renamed(
    own_database_url: str,
) -> None:
    names = ["Paiements par carte", "paiements  PAR carte ", "E\u0301vry", "Évry"]
    ids = _registered_before_0008(own_database_url, names)
    with pytest.raises(InvalidRequest) as refused:
        migrate(Settings(database_url=own_database_url))
    assert refused.value.field == "PARTAGE_DATABASE_URL"
    for name, dataset_id in zip(names, ids, strict=True):
        assert f"{name!r} ({dataset_id})" in refused.value.detail
    assert "Rename all but one of each" in refused.value.detail
    assert _name_keys(own_database_url) is None  # nothing changed: still at 0007
    engine = make_engine(own_database_url)
    with engine.begin() as connection:
        for dataset_id, name in ((ids[1], "Paiements 2024"), (ids[3], "Évry (2)")):
            connection.execute(
                update(_DATASET).where(_DATASET.c.id == dataset_id).values(name=name)
            )
    engine.dispose()
    migrate(Settings(database_url=own_database_url))
    keys = _name_keys(own_database_url)
    assert keys is not None and keys["E\u0301vry"] == name_key("évry") and len(keys) == 4

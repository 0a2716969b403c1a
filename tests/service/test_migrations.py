"""The migrations: where they live (the top-level ``alembic/`` folder, installed as a namespace
package so that ``partage db upgrade`` finds them from any directory, without shadowing the
library), and that going down keeps every row of the tables that remain."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, Table, inspect, select

from anonymization.errors import PartageError
from service import migrate
from service.app import create_app
from service.audit import service as audit
from service.auth.models import SCOPE_ADMIN
from service.auth.service import create_client
from service.db import make_engine
from service.migrate import alembic_config
from tests.service.conftest import LOOPBACK, bearer, service_settings, token_for
from tests.service.factories import csv_bytes, dataset_form, payments_frame
from tests.service.journey import REQUEST, make_agreement, request_and_wait
from tests.service.test_microdata_agreements import (
    MICRODATA,
    POLICY,
    microdata_agreement,
    people,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_migrations_are_the_top_level_alembic_folder() -> None:
    assert migrate.migrations_directory() == ROOT / "alembic"
    assert (ROOT / "alembic" / "env.py").is_file()
    assert not (ROOT / "service" / "migrations").exists()
    # An __init__.py there would make `import alembic` in the project's folder import it.
    assert not list((ROOT / "alembic").rglob("__init__.py"))


def test_the_library_is_imported_from_the_project_folder() -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import alembic.command; print(alembic.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not Path(found).is_relative_to(ROOT / "alembic"), found


def test_the_packaging_lists_every_package_and_the_migrations() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("anonymization", "policies", "service")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {
        migrate.MIGRATIONS,
        f"{migrate.MIGRATIONS}.versions",
    }
    assert setuptools["package-dir"] == {migrate.MIGRATIONS: "alembic"}
    assert "alembic.ini" in setuptools["package-data"][migrate.MIGRATIONS]


def test_db_upgrade_works_from_another_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    environment = {
        **os.environ,
        "PARTAGE_DATABASE_URL": url,
        "PARTAGE_KEYS_DIR": str(tmp_path / "keys"),
        "PARTAGE_DATA_DIR": str(tmp_path / "data"),
    }
    partage = Path(sys.executable).parent / "partage"
    result = subprocess.run(
        [str(partage), "db", "upgrade"], cwd=tmp_path, env=environment, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with sqlite3.connect(tmp_path / "elsewhere.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_migrations_not_installed_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate, "MIGRATIONS", "partage_no_such_migrations")
    with pytest.raises(PartageError, match="not installed: reinstall partage") as raised:
        migrate.alembic_config("sqlite://")
    assert raised.value.code == "migrations_missing"


def _fill(app: FastAPI, client: TestClient) -> None:
    """A row in every table, made as the service makes them."""
    with app.state.sessionmaker() as session:
        record, secret = create_client(session, "admin", (SCOPE_ADMIN,))
        session.commit()
    admin = bearer(token_for(client, record.client_id, secret))
    partner = client.post("/partners", json={"name": "Office"}, headers=admin).json()
    files = {"file": ("payments.csv", csv_bytes(payments_frame()), "text/csv")}
    dataset = client.post("/datasets", data=dataset_form(), files=files, headers=admin).json()
    agreement = make_agreement(client, admin, partner["partner"]["id"], dataset["id"])
    suspended = client.post(f"/agreements/{agreement['id']}/suspend", headers=admin)
    assert suspended.status_code == 200, suspended.text
    assert client.post(f"/agreements/{agreement['id']}/resume", headers=admin).status_code == 200
    headers = bearer(token_for(client, partner["client_id"], partner["client_secret"]))
    assert request_and_wait(client, headers, agreement["id"], REQUEST)["status"] == "succeeded"
    files = {"file": ("people.csv", csv_bytes(people()), "text/csv")}
    form = {"name": "people", "policy": json.dumps(POLICY)}
    people_id = client.post("/datasets", data=form, files=files, headers=admin).json()["id"]
    lab = microdata_agreement(client, admin, partner["partner"]["id"], people_id)
    assert request_and_wait(client, headers, lab["id"], MICRODATA)["status"] == "succeeded"
    with app.state.sessionmaker() as session:
        assert audit.sign_head(session, app.state.signing_keys) is not None
        session.commit()


def _rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every table's primary keys, sorted."""
    found = {}
    with engine.connect() as connection:
        for name in inspect(connection).get_table_names():
            table = Table(name, MetaData(), autoload_with=connection)
            keys = select(*table.primary_key.columns)
            found[name] = sorted(tuple(row) for row in connection.execute(keys))
    return found


def test_going_down_one_revision_at_a_time_keeps_every_row(
    own_database_url: str, tmp_path: Path
) -> None:
    app = create_app(service_settings(own_database_url, tmp_path))
    with TestClient(app, client=LOOPBACK) as client:
        _fill(app, client)
    app.state.engine.dispose()
    engine = make_engine(own_database_url)
    at_head = _rows(engine)
    assert len(at_head) == 12 and all(at_head.values()), at_head.keys()  # every table has rows
    config = alembic_config(own_database_url)
    revisions = [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()]
    try:
        for revision in revisions[1:]:  # head first; the last one's downgrade drops every table
            command.downgrade(config, revision)
            now = _rows(engine)
            lost = [
                name
                for name, rows in now.items()
                if name != "alembic_version" and rows != at_head[name]
            ]
            assert not lost, f"going down to {revision} lost rows of {lost}"
        command.upgrade(config, "head")
        assert _rows(engine).keys() == at_head.keys()
    finally:
        engine.dispose()

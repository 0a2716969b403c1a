"""An app and an HTTP client on SQLite and on PostgreSQL, both built by the real migrations.

Each xdist worker gets its own databases (a temporary SQLite file and a uniquely named
PostgreSQL database, dropped at the end); rows are deleted after every test. PostgreSQL params
are skipped when it does not answer, unless PARTAGE_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.app import create_app
from service.audit.models import GENESIS, HEAD_ID, AuditHead
from service.auth.models import PARTNER_SCOPES, SCOPE_ADMIN
from service.auth.service import create_client
from service.config import Settings
from service.migrate import upgrade
from service.models import Base

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
# A client on this machine (the TCP peer's address): the only one plain HTTP is accepted from.
LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'partage.db'}"
    upgrade(url)
    return url


@contextlib.contextmanager
def postgres_database(base_settings: Settings, label: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database, migrated to head, dropped on exit."""
    admin_url = make_url(base_settings.postgres_admin_url)
    name = f"partage_test_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        message = f"PostgreSQL does not answer at {admin_url.host}:{admin_url.port}: {error}"
        if base_settings.require_postgres:
            pytest.fail(message)
        pytest.skip(message)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_url(base_settings: Settings, worker_id: str) -> Iterator[str]:
    with postgres_database(base_settings, worker_id) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=BACKENDS)
def own_database_url(
    request: pytest.FixtureRequest, base_settings: Settings, tmp_path: Path, worker_id: str
) -> Iterator[str]:
    """A database of the test's own, migrated to head (for tests that migrate it down)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        upgrade(url)
        yield url
        return
    with postgres_database(base_settings, f"{worker_id}_own") as url:
        yield url


def service_settings(database_url: str, folder: Path) -> Settings:
    """Settings for a test app on ``database_url``, its files under ``folder``."""
    return Settings(
        database_url=database_url,
        data_dir=folder / "data",
        keys_dir=folder / "keys",
        max_upload_bytes=2 * 1024 * 1024,
        worker_poll_seconds=0.05,
        rate_limit_per_second=1000,
        rate_limit_burst=10_000,
        token_attempts_per_second=1000,
        token_attempts_burst=10_000,
        token_failures_burst=10_000,
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return service_settings(database_url, tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    with application.state.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
        # The empty chain's head, as the migration leaves it: without it, the next test's first
        # append and the worker pool's first head signature could both insert one (a 409).
        connection.execute(insert(AuditHead).values(id=HEAD_ID, seq=0, hash=GENESIS))
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=LOOPBACK) as test_client:
        yield test_client


def token_for(client: TestClient, client_id: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope:
        form["scope"] = scope
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_credentials(app: FastAPI) -> tuple[str, str]:
    with app.state.sessionmaker() as session:
        record, secret = create_client(session, "test admin", (SCOPE_ADMIN,))
        session.commit()
    return record.client_id, secret


@pytest.fixture
def admin(client: TestClient, admin_credentials: tuple[str, str]) -> dict[str, str]:
    """Authorization headers of an administrator."""
    return bearer(token_for(client, *admin_credentials))


@pytest.fixture
def make_partner(client: TestClient, admin: dict[str, str]) -> Callable[[str], dict[str, Any]]:
    """Register a partner; returns its id, credentials and authorization headers."""

    def make(name: str) -> dict[str, Any]:
        response = client.post("/partners", json={"name": name}, headers=admin)
        assert response.status_code == 201, response.text
        body = response.json()
        assert sorted(body["partner"]["scopes"]) == sorted(PARTNER_SCOPES)
        headers = bearer(token_for(client, body["client_id"], body["client_secret"]))
        return {**body, "id": body["partner"]["id"], "headers": headers}

    return make


@pytest.fixture
def make_dataset(client: TestClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Register the synthetic payments dataset (CSV); returns the response body."""
    from tests.service.factories import csv_bytes, dataset_form, payments_frame

    def make(name: str = "payments") -> dict[str, Any]:
        files = {"file": ("payments.csv", csv_bytes(payments_frame()), "text/csv")}
        response = client.post("/datasets", data=dataset_form(name), files=files, headers=admin)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return make


@pytest.fixture
def real_ids(
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
) -> dict[str, str]:
    """An agreement, its partner and dataset, for requests that must reach past a 404."""
    from tests.service.factories import agreement_body

    dataset, partner = make_dataset(), make_partner("Walked partner")
    agreement = client.post(
        "/agreements", json=agreement_body(partner["id"], dataset["id"]), headers=admin
    )
    assert agreement.status_code == 201, agreement.text
    return {
        "agreement_id": agreement.json()["id"],
        "partner_id": partner["id"],
        "dataset_id": dataset["id"],
        "extract_id": str(uuid.uuid4()),
    }

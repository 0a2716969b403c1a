"""The schema comes from the migrations only, and a request that fails writes nothing."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Uuid,
    column,
    func,
    insert,
    inspect,
    select,
    table,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from policies.text import name_key
from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.auth.deps import Caller
from service.db import make_engine
from service.errors import error_response
from service.migrate import alembic_config
from service.models import Base
from service.partners.models import Partner
from tests.service.factories import agreement_body


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_migrations_go_down_and_up_again(tmp_path: Any) -> None:
    config = alembic_config(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")


def test_a_failure_mid_request_leaves_nothing_written(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    make_dataset,  # type: ignore[no-untyped-def]
    make_partner,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, partner = make_dataset(), make_partner("Partner")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    # The head row is flushed, then writing the first version fails.
    monkeypatch.setattr(agreements, "_snapshot", fail)
    with pytest.raises(RuntimeError):
        client.post("/agreements", json=agreement_body(partner["id"], dataset["id"]), headers=admin)
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Agreement)) == 0


def test_a_commit_that_fails_is_a_409_and_writes_nothing(
    app: FastAPI, client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def lose_the_race(self: Session) -> None:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(Session, "commit", lose_the_race)
    response = client.post("/partners", json={"name": "Racing"}, headers=admin)
    monkeypatch.undo()
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Partner)) == 0


def test_concurrent_edits_of_one_agreement_conflict(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    make_dataset,  # type: ignore[no-untyped-def]
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    dataset, partner = make_dataset(), make_partner("Partner")
    created = client.post(
        "/agreements", json=agreement_body(partner["id"], dataset["id"]), headers=admin
    ).json()
    agreement_id = uuid.UUID(created["id"])
    caller = Caller("admin", frozenset({"admin"}), None)
    with app.state.sessionmaker() as first, app.state.sessionmaker() as second:
        stale = agreements.get(second, caller, agreement_id)  # second reads version 1...
        assert stale.version == 1
        agreements.transition(first, caller, agreement_id, "suspend", None)
        first.commit()  # ...first moves it to version 2...
        with pytest.raises(StaleDataError):  # ...and second's write, from version 1, fails.
            agreements.transition(second, caller, agreement_id, "revoke", None)
    assert error_response(StaleDataError()).status_code == 409


def test_the_noise_secret_migration_goes_down_and_up(database_url: str) -> None:
    config = alembic_config(database_url)
    engine = make_engine(database_url)

    def columns() -> set[str]:
        with engine.connect() as connection:
            return {column["name"] for column in inspect(connection).get_columns("dataset")}

    try:
        command.downgrade(config, "0005")
        assert not {"noise_key_id", "wrapped_noise_secret"} & columns()
        command.upgrade(config, "head")
        assert {"noise_key_id", "wrapped_noise_secret"} <= columns()
    finally:
        command.upgrade(config, "head")
        engine.dispose()


def test_the_name_key_migration_keeps_partners_named_alike_and_their_clients(
    database_url: str,
) -> None:
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    partner = table(
        "partner", column("id", Uuid()), column("name", String()), column("created_at", DateTime())
    )
    client = table(
        "oauth_client",
        *(column(name, String()) for name in ("client_id", "name", "secret_hash", "scope")),
        column("id", Uuid()),
        column("partner_id", Uuid()),
        column("secret_generation", Integer()),
        column("created_at", DateTime()),
    )
    names = ["Office de tourisme", "office  de TOURISME ", "Évry", "E\u0301vry"]
    ids = [uuid.uuid4() for _ in names]
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    try:
        command.downgrade(config, "0006")
        with engine.begin() as connection:
            for number, (partner_id, name) in enumerate(zip(ids, names, strict=True)):
                at = now + datetime.timedelta(days=number)
                connection.execute(insert(partner).values(id=partner_id, name=name, created_at=at))
                connection.execute(
                    insert(client).values(
                        id=uuid.uuid4(),
                        client_id=f"ptg_m{number}",
                        name=name,
                        secret_hash="-",
                        scope="extracts:read",
                        partner_id=partner_id,
                        secret_generation=1,
                        created_at=at,
                    )
                )
        command.upgrade(config, "head")
        with Session(engine) as session:
            rows = session.execute(select(Partner.name, Partner.name_key))
            keys = {str(name): str(key) for name, key in rows}
            assert len(set(keys.values())) == len(names)  # the index holds, no name is lost
            assert keys["Office de tourisme"] == name_key("OFFICE DE TOURISME")
            assert session.scalar(select(func.count()).select_from(client)) == len(names)
        command.downgrade(config, "0006")  # in place: the clients stay
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(client)) == len(names)
            assert "name_key" not in {c["name"] for c in inspect(connection).get_columns("partner")}
    finally:
        command.upgrade(config, "head")
        with engine.begin() as connection:
            connection.execute(client.delete().where(client.c.partner_id.in_(ids)))
            connection.execute(partner.delete().where(partner.c.id.in_(ids)))
        engine.dispose()

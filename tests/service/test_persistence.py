"""The schema comes from the migrations only, and a request that fails writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.db import make_engine
from service.migrate import alembic_config
from service.models import Base
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

"""`partage demo load`: registers the demo once, and its partners can use what it prints."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.agreements.models import Agreement
from service.datasets.models import Dataset
from service.demo.consumption import ConsumptionGenerator
from service.demo.generate import generate
from service.demo.load import load
from service.demo.payments import PaymentsGenerator
from service.partners.models import Partner
from tests.service.conftest import bearer, token_for


def counts(app: FastAPI) -> list[int]:
    with app.state.sessionmaker() as session:
        return [
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Dataset, Partner, Agreement)
        ]


def test_loading_twice_creates_nothing_twice(
    app: FastAPI, client: TestClient, tmp_path: Path
) -> None:
    generate(PaymentsGenerator(3_000, 1), tmp_path, "payments", False, lambda _rows: None)
    generate(
        ConsumptionGenerator(40, 30, 1, ["74"]), tmp_path, "consumption", False, lambda _rows: None
    )
    saved: dict[str, str] = {}
    for _ in range(2):
        with app.state.sessionmaker() as session:
            loaded = load(session, app.state.store, tmp_path, saved)
            session.commit()
        saved = {share.client_id: share.client_secret for share in loaded}
        assert counts(app) == [2, 2, 2]
    for share in loaded:
        headers = bearer(token_for(client, share.client_id, share.client_secret))
        listed = client.get("/agreements", headers=headers).json()
        assert [agreement["id"] for agreement in listed] == [share.agreement_id]


def test_a_lost_secret_is_replaced(app: FastAPI, client: TestClient, tmp_path: Path) -> None:
    generate(PaymentsGenerator(2_000, 1), tmp_path, "payments", False, lambda _rows: None)
    generate(
        ConsumptionGenerator(20, 10, 1, ["74"]), tmp_path, "consumption", False, lambda _rows: None
    )
    with app.state.sessionmaker() as session:
        first = load(session, app.state.store, tmp_path, {})
        session.commit()
    with app.state.sessionmaker() as session:
        second = load(session, app.state.store, tmp_path, {})
        session.commit()
    assert [s.client_id for s in first] == [s.client_id for s in second]
    assert all(a.client_secret != b.client_secret for a, b in zip(first, second, strict=True))
    token_for(client, second[0].client_id, second[0].client_secret)

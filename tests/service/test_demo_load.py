"""`partage demo load`: registers the demo once, and its partners can use what it prints."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.agreements.models import Agreement
from service.cli import app as cli
from service.datasets.models import Dataset
from service.demo.consumption import ConsumptionGenerator
from service.demo.generate import generate
from service.demo.load import load, write_saved
from service.demo.names import scrambled_ids
from service.demo.payments import PaymentsGenerator
from service.keys import write_private_json
from service.partners.models import Partner
from tests.service.conftest import bearer, token_for
from tests.service.journey import request_and_wait
from tests.service.test_cli_admin import environment

__all__ = ["environment"]


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
        assert counts(app) == [3, 2, 3]
    for share in loaded:
        headers = bearer(token_for(client, share.client_id, share.client_secret))
        listed = client.get("/agreements", headers=headers).json()
        own = {other.agreement_id for other in loaded if other.partner == share.partner}
        assert {agreement["id"] for agreement in listed} == own
    assert [(share.partner, share.kind) for share in loaded] == [
        ("Office de tourisme", "aggregate"),
        ("Laboratoire universitaire", "aggregate"),
        ("Laboratoire universitaire", "microdata"),
    ]


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


def _loaded_lab(
    app: FastAPI, client: TestClient, folder: Path, readings: ConsumptionGenerator
) -> tuple[dict[str, Any], dict[str, str]]:
    """The demo loaded from small files under ``folder``: the laboratory's saved credentials
    and the headers of a token of its."""
    generate(PaymentsGenerator(2_000, 1), folder, "payments", False, lambda _rows: None)
    generate(readings, folder, "consumption", False, lambda _rows: None)
    with app.state.sessionmaker() as session:
        loaded = load(session, app.state.store, folder, {})
        session.commit()
    write_saved(folder / "credentials.json", loaded)
    lab: dict[str, Any] = json.loads((folder / "credentials.json").read_text())[
        "Laboratoire universitaire"
    ]
    return lab, bearer(token_for(client, lab["client_id"], lab["client_secret"]))


def test_the_labs_microdata_agreement_releases_k_anonymous_households(
    app: FastAPI, client: TestClient, tmp_path: Path
) -> None:
    # The demo's territory and a year of readings, with fewer meters than `demo load`'s 20,000.
    readings = ConsumptionGenerator(2_000, 365, 2025, ["74"])
    lab, headers = _loaded_lab(app, client, tmp_path, readings)
    agreement = lab["agreements"]["microdata"]

    done = request_and_wait(client, headers, agreement, {"kind": "microdata", "format": "csv"})

    assert done["status"] == "succeeded", (done["failure_code"], done["failure"])
    csv = client.get(f"/extracts/{done['id']}/download", headers=headers).content
    table = pd.read_csv(io.BytesIO(csv), dtype=str, keep_default_na=False)
    qis = ["commune", "contracted_power_kva", "tariff", "heating"]
    assert list(table.columns) == ["meter_id", *qis, "consumption_class", "annual_kwh"]
    classes = table.groupby(qis)
    assert classes.size().min() >= 5
    assert classes["consumption_class"].nunique().min() >= 2
    manifest = client.get(f"/extracts/{done['id']}/manifest", headers=headers).json()
    assert manifest["measured"]["k"] == classes.size().min()
    assert manifest["records_released"] == len(table)
    assert manifest["records_released"] + manifest["records_suppressed"] == 2_000
    assert manifest["records_suppressed"] <= 0.05 * 2_000
    households = pd.read_parquet(tmp_path / "households.parquet")
    assert not set(table["meter_id"]) & set(households["meter_id"])  # pseudonyms only
    # Heating is read off the readings: it matches the generator's own heated homes.
    ids = scrambled_ids(np.arange(readings.meters), 14)
    heated = pd.Series(readings.heating > 0, index=ids)
    derived = households.set_index("meter_id")["heating"].eq("electric")
    assert (derived == heated.reindex(derived.index)).mean() > 0.99


def test_the_lab_gets_microdata_of_households_and_aggregates_of_consumption(
    app: FastAPI, client: TestClient, tmp_path: Path
) -> None:
    # Two files, two populations to the ledger: the one-kind rule lets both through (the
    # README's known limit on derived data says why that is not proof of safety).
    lab, headers = _loaded_lab(app, client, tmp_path, ConsumptionGenerator(300, 20, 2025, ["74"]))
    records, aggregate = lab["agreements"]["microdata"], lab["agreements"]["aggregate"]
    done = request_and_wait(client, headers, records, MICRODATA)
    assert done["status"] == "succeeded", (done["failure_code"], done["failure"])
    decision = client.post(f"/agreements/{aggregate}/decisions", json=MONTHLY, headers=headers)
    assert decision.status_code == 200 and decision.json()["permit"], decision.text
    done = request_and_wait(client, headers, aggregate, MONTHLY)
    assert done["status"] == "succeeded", (done["failure_code"], done["failure"])
    # More microdata of the households under the same agreement is still allowed.
    again = client.post(f"/agreements/{records}/decisions", json=MICRODATA, headers=headers)
    assert again.status_code == 200 and again.json()["permit"], again.text


MICRODATA = {"kind": "microdata", "format": "csv"}
MONTHLY = {"group_by": {"iris": "commune", "date": "month"}, "measures": ["subjects"]}


@pytest.fixture
def demo(environment: Path) -> Path:
    """A migrated database and small demo files under ``environment/demo``."""
    data = environment / "demo"
    generate(PaymentsGenerator(2_000, 1), data, "payments", False, lambda _rows: None)
    generate(ConsumptionGenerator(20, 10, 1, ["74"]), data, "consumption", False, lambda _: None)
    assert CliRunner().invoke(cli, ["db", "upgrade"]).exit_code == 0
    return environment


def partners(environment: Path) -> int:
    with sqlite3.connect(environment / "cli.db") as con:
        return int(con.execute("SELECT count(*) FROM partner").fetchone()[0])


def load_command(environment: Path, credentials: Path) -> tuple[int, str]:
    arguments = ["demo", "load", "--data-dir", str(environment / "demo")]
    result = CliRunner().invoke(cli, [*arguments, "--credentials", str(credentials)])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("content", [b"{not json", b"[1]", b'{"a": 1}', b"\xff"])
def test_a_credentials_file_holding_something_else_is_refused(demo: Path, content: bytes) -> None:
    (demo / "creds.json").write_bytes(content)
    code, output = load_command(demo, demo / "creds.json")
    assert code == 2 and "[--credentials]" in output and "saved credentials" in output
    assert partners(demo) == 0 and (demo / "creds.json").read_bytes() == content


def test_credentials_that_cannot_be_saved_load_nothing(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("service.demo.load.write_private_json", full)
    code, output = load_command(demo, demo / "creds.json")
    assert code == 2 and "No space left on device" in output
    assert partners(demo) == 0
    monkeypatch.setattr("service.demo.load.write_private_json", write_private_json)
    code, output = load_command(demo, demo / "creds.json")
    assert code == 0, output
    assert partners(demo) == 2 and (demo / "creds.json").is_file()

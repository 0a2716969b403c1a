"""The demo's laboratory holds microdata of households and aggregates of consumption: two files,
two populations to the ledger, so the one-kind rule lets both through (reviewer's check)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.demo.consumption import ConsumptionGenerator
from service.demo.generate import generate
from service.demo.load import load, write_saved
from service.demo.payments import PaymentsGenerator
from tests.service.conftest import bearer, token_for
from tests.service.journey import request_and_wait

REQUEST = {
    "group_by": {"iris": "commune", "date": "month"},
    "measures": ["subjects"],
    "format": "csv",
}


def test_the_lab_gets_microdata_of_households_and_aggregates_of_consumption(
    app: FastAPI, client: TestClient, tmp_path: Path
) -> None:
    generate(PaymentsGenerator(500, 1), tmp_path, "payments", False, lambda _rows: None)
    readings = ConsumptionGenerator(300, 20, 2025, ["74"])
    generate(readings, tmp_path, "consumption", False, lambda _rows: None)
    with app.state.sessionmaker() as session:
        loaded = load(session, app.state.store, tmp_path, {})
        session.commit()
    write_saved(tmp_path / "credentials.json", loaded)
    lab = json.loads((tmp_path / "credentials.json").read_text())["Laboratoire universitaire"]
    headers = bearer(token_for(client, lab["client_id"], lab["client_secret"]))
    records = lab["agreements"]["microdata"]
    done = request_and_wait(client, headers, records, {"kind": "microdata", "format": "csv"})
    assert done["status"] == "succeeded", (done["failure_code"], done["failure"])

    aggregate = lab["agreements"]["aggregate"]
    decision = client.post(f"/agreements/{aggregate}/decisions", json=REQUEST, headers=headers)
    assert decision.status_code == 200, decision.text
    codes = {reason["code"] for reason in decision.json()["reasons"]}
    assert not codes & {"holds_microdata", "holds_aggregates", "holds_other_microdata"}
    assert decision.json()["permit"], decision.json()
    done = request_and_wait(client, headers, aggregate, REQUEST)
    assert done["status"] == "succeeded", (done["failure_code"], done["failure"])
    # And the other way round is now refused for the households: the lab holds their records
    # only, so a second microdata request under the same agreement is still allowed.
    again = client.post(
        f"/agreements/{records}/decisions",
        json={"kind": "microdata", "format": "csv"},
        headers=headers,
    )
    assert again.status_code == 200 and again.json()["permit"], again.text

"""The differencing attack over the API: two overlapping extracts whose difference would isolate
two meters; the partner's ledger (in the service database) makes the second release hide it."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.testclient import TestClient
from scipy.optimize import linprog
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.cli import app as cli
from service.ledger.models import LedgerEntry
from tests.service.factories import csv_bytes
from tests.service.journey import make_agreement, request_and_wait

K = 5
POLICY = {
    "dataset": {
        "subject": "meter",
        "columns": {
            "commune": {"hierarchy": "geo_fr", "level": "commune"},
            "tariff": {},
            "date": {"hierarchy": "time"},
            "kwh": {"type": "measure"},
        },
    }
}
RELEASE = {
    "dimensions": {"commune": "commune", "tariff": "value"},
    "measures": {"kwh": ["sum"]},
    "protection": {"k": K},
}


def meters() -> pd.DataFrame:
    """Commune 06088 has 30 meters, two of them on tariff ``tempo``; 06029 is small."""
    homes = [("06088", "base")] * 28 + [("06088", "tempo")] * 2 + [("06029", "base")] * 2
    homes += [("06004", "base")] * 12 + [("13055", "base")] * 40
    rows = [
        (f"M{number:03d}", commune, tariff, day, f"{10.0 + number:.1f}")
        for number, (commune, tariff) in enumerate(homes)
        for day in ("2025-01-05", "2025-02-05")
    ]
    return pd.DataFrame(rows, columns=["meter", "commune", "tariff", "date", "kwh"])


def attacker_interval(hidden: int, total: float, target: int) -> tuple[float, float]:
    """Bounds of one hidden cell when the hidden cells sum to ``total`` (all >= 0)."""
    bounds = []
    for sense in (1.0, -1.0):
        cost = np.zeros(hidden)
        cost[target] = sense
        result = linprog(cost, A_eq=np.ones((1, hidden)), b_eq=[total], bounds=[(0, None)] * hidden)
        bounds.append(sense * result.fun if result.status == 0 else np.inf)
    return bounds[0], bounds[1]


def partner_agreement(
    client: TestClient, admin: dict[str, str], make_partner: Any, data: pd.DataFrame
) -> tuple[dict[str, Any], dict[str, str]]:
    """A dataset of ``data``, a partner and its agreement: the agreement and its headers."""
    files = {"file": ("meters.csv", csv_bytes(data), "text/csv")}
    form = {"name": "meters", "policy": json.dumps(POLICY)}
    dataset = client.post("/datasets", data=form, files=files, headers=admin).json()
    partner = make_partner("Energy observatory")
    agreement = make_agreement(
        client, admin, partner["id"], dataset["id"], release=RELEASE, limits={}
    )
    headers: dict[str, str] = partner["headers"]
    return agreement, headers


def test_two_overlapping_api_extracts_recover_nothing(
    app: FastAPI, client: TestClient, admin: dict[str, str], make_partner: Any
) -> None:
    agreement, headers = partner_agreement(client, admin, make_partner, meters())
    by_commune = {"group_by": {"commune": "commune"}, "measures": ["subjects", "kwh.sum"]}
    first = request_and_wait(client, headers, agreement["id"], by_commune)
    without_tempo = {**by_commune, "filters": {"tariff": {"in": ["base"]}}, "totals": True}
    second = request_and_wait(client, headers, agreement["id"], without_tempo)
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")

    def table(extract: dict[str, Any]) -> pd.DataFrame:
        data = client.get(f"/extracts/{extract['id']}/download", headers=headers).content
        return pd.read_csv(io.BytesIO(data), dtype={"commune": str})

    held, new = table(first), table(second)
    nice = held[held["commune"] == "06088"].iloc[0]
    assert (nice["status"], nice["subjects"]) == ("released", 30)
    target = new.index[new["commune"] == "06088"][0]
    assert (new.loc[target, "status"], new.loc[target, "reason"]) == ("suppressed", "differencing")
    hidden = new.index[new["status"] == "suppressed"].tolist()
    total = float(new.loc[new["commune"] == "*", "subjects"].iloc[0])
    known = new.loc[(new["status"] == "released") & (new["commune"] != "*"), "subjects"].sum()
    low, high = attacker_interval(len(hidden), total - float(known), hidden.index(target))
    assert high - low >= K, "the first release minus the second must not give 06088's tempo"

    manifest = client.get(f"/extracts/{second['id']}/manifest", headers=headers).json()
    assert "differencing" in {cell["reason"] for cell in manifest["audit"]["cells"]}
    with app.state.sessionmaker() as session:
        entries = session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.partner_id == uuid.UUID(agreement["partner_id"]))
        )
    assert entries == 2


def test_a_refusal_tells_the_partner_nothing_about_the_cell(
    client: TestClient, admin: dict[str, str], make_partner: Any
) -> None:
    """Three tempo meters use 99 % of the energy. Held: the communes and their total. New: by
    tariff, where tempo (3 meters) is protected and its upper bound is the held total, within
    15 % of its value: no complement helps, the release is refused. The partner's failure says
    so without naming the cell or its interval (which would tell the value within 15 %); the
    administrators' audit log has both."""
    homes = [("06088", "base", 1.0)] * 30 + [("13055", "base", 1.0)] * 9
    homes += [("13055", "tempo", 1000.0)] * 3
    rows = [(f"M{n:03d}", c, t, "2025-01-05", kwh) for n, (c, t, kwh) in enumerate(homes)]
    data = pd.DataFrame(rows, columns=["meter", "commune", "tariff", "date", "kwh"])
    agreement, headers = partner_agreement(client, admin, make_partner, data)
    by_commune = {"group_by": {"commune": "commune"}, "measures": ["kwh.sum"], "totals": True}
    assert request_and_wait(client, headers, agreement["id"], by_commune)["status"] == "succeeded"
    by_tariff = {"group_by": {"tariff": "value"}, "measures": ["kwh.sum"]}
    refused = request_and_wait(client, headers, agreement["id"], by_tariff)

    assert (refused["status"], refused["failure_code"]) == ("failed", "audit_failed")
    assert "tempo" not in refused["failure"] and not any(c.isdigit() for c in refused["failure"])
    events = client.get(
        "/audit",
        params={"action": "release.failed", "object": f"extract:{refused['id']}"},
        headers=admin,
    ).json()["items"]
    detail = events[0]["details"]["detail"]
    assert "tariff=tempo" in detail and "with the releases the partner holds" in detail


def test_the_audit_of_api_extracts_from_their_files_with_the_held_one(
    client: TestClient, admin: dict[str, str], make_partner: Any, tmp_path: Path
) -> None:
    """By commune, then by tariff: both add up to the total neither publishes. A data
    protection officer with the partner's downloads (tables and signed manifests) re-runs the
    second release's audit jointly with the first and finds the manifest's intervals."""
    agreement, headers = partner_agreement(client, admin, make_partner, meters())
    requests = [
        {"group_by": {"commune": "commune"}, "measures": ["subjects", "kwh.sum"]},
        {"group_by": {"tariff": "value"}, "measures": ["subjects", "kwh.sum"]},
    ]
    for name, request in zip(["first", "second"], requests, strict=True):
        extract = request_and_wait(client, headers, agreement["id"], request)
        assert extract["status"] == "succeeded", extract
        url = f"/extracts/{extract['id']}"
        data = client.get(f"{url}/download", params={"format": "csv"}, headers=headers).content
        (tmp_path / f"{name}.csv").write_bytes(data)
        manifest = client.get(f"{url}/manifest", headers=headers).json()
        (tmp_path / f"{name}.json").write_text(json.dumps(manifest))
    assert "suppressed" in pd.read_csv(tmp_path / "second.csv")["status"].tolist()
    files = ["--held", str(tmp_path / "first.csv"), "--held-manifest", str(tmp_path / "first.json")]
    audit = ["audit", str(tmp_path / "second.csv"), "--manifest", str(tmp_path / "second.json")]
    result = CliRunner().invoke(cli, [*audit, *files])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert "jointly with 1 held release(s): the intervals equal the manifest's" in output


def test_an_extract_of_no_cells_leaves_the_partners_next_extracts_working(
    app: FastAPI, client: TestClient, admin: dict[str, str], make_partner: Any
) -> None:
    # A filter that matches nothing: the release is empty, and its ledger entry (no cells) must
    # read back when the partner's next extract is protected against what it holds.
    agreement, headers = partner_agreement(client, admin, make_partner, meters())
    nothing = {
        "group_by": {"commune": "commune"},
        "measures": ["subjects", "kwh.sum"],
        "filters": {"tariff": {"in": ["nuclear"]}},
        "totals": True,
    }
    empty = request_and_wait(client, headers, agreement["id"], nothing)
    assert empty["status"] == "succeeded", empty.get("failure")
    manifest = client.get(f"/extracts/{empty['id']}/manifest", headers=headers).json()
    assert manifest["cells"] == 0
    by_commune = {"group_by": {"commune": "commune"}, "measures": ["subjects", "kwh.sum"]}
    after = request_and_wait(client, headers, agreement["id"], by_commune)
    assert after["status"] == "succeeded", after.get("failure")
    manifest = client.get(f"/extracts/{after['id']}/manifest", headers=headers).json()
    assert manifest["released"] > 0

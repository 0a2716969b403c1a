"""``partage release`` groups and filters a zoned time by its clock time in its own zone, on a
machine in any time zone (the process's ``TZ``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import MACHINE_ZONES

POLICY = """
dataset:
  subject: card
  columns:
    paid_at: {hierarchy: time}
    amount: {type: measure}
release:
  dimensions: {paid_at: day}
  measures: {amount: [sum]}
  protection: {k: 5}
"""
# Paris clock times, five cards each: around midnight on 1 January (+01:00) and 1 July (+02:00).
CLOCK_TIMES = ["2024-12-31 23:30", "2025-01-01 00:30", "2025-07-01 00:30"]


def _payments(folder: Path, written: str) -> Path:
    times = pd.to_datetime([t for t in CLOCK_TIMES for _ in range(5)]).tz_localize("Europe/Paris")
    frame = pd.DataFrame({"card": [f"c{i}" for i in range(15)], "paid_at": times, "amount": 1.0})
    if written == "parquet":
        frame.to_parquet(folder / "payments.parquet", index=False)
        return folder / "payments.parquet"
    frame["paid_at"] = frame["paid_at"].map(pd.Timestamp.isoformat)  # 2025-01-01T00:30:00+01:00
    frame.to_csv(folder / "payments.csv", index=False)
    return folder / "payments.csv"


def _release(folder: Path, data: Path, zone: str, request: str) -> dict[str, int]:
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "request.yaml").write_text(request)
    partage = Path(sys.executable).with_name("partage")
    args = ["release", str(data), "--policy", str(folder / "policy.yaml"), "--quiet"]
    args += ["--request", str(folder / "request.yaml"), "--out", str(folder / "out.csv")]
    done = subprocess.run(
        [str(partage), *args],
        env={**os.environ, "TZ": zone},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(folder / "out.csv", dtype={"paid_at": str})
    return dict(zip(table["paid_at"], table["subjects"], strict=True))


@pytest.mark.parametrize("zone", MACHINE_ZONES)
@pytest.mark.parametrize("written", ["parquet", "csv"])
def test_a_paris_time_after_midnight_is_in_its_own_month_and_day(
    tmp_path: Path, zone: str, written: str
) -> None:
    data = _payments(tmp_path, written)
    months = _release(tmp_path, data, zone, "group_by: {paid_at: month}\nmeasures: [subjects]\n")
    assert months == {"2024-12": 5, "2025-01": 5, "2025-07": 5}
    first = "filters: {paid_at: {from: 2025-01-01, to: 2025-01-01}}\n"
    days = _release(tmp_path, data, zone, f"group_by: {{paid_at: day}}\n{first}")
    assert days == {"2025-01-01": 5}
    july = "filters: {paid_at: {from: 2025-07-01, to: 2025-07-31}}\n"
    assert _release(tmp_path, data, zone, f"group_by: {{paid_at: month}}\n{july}") == {"2025-07": 5}

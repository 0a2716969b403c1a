"""The ledger file: a damaged or foreign file is a DataError naming the ledger, never a crash
nor a silent change to another application's database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from anonymization import ledger as ledger_module
from anonymization.errors import DataError
from anonymization.ledger import SQLiteLedger
from anonymization.release import run_release
from tests.anonymization.test_attacks import meters, plan


@pytest.fixture
def ledger(tmp_path: Path) -> SQLiteLedger:
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    ledger.record("partner", run_release(meters(), plan("commune")).held("meters", {}))
    return ledger


@pytest.mark.parametrize(
    "damage",
    [
        "cells = '{not json'",
        "request = 'not json'",
        "dimensions = '[1, 2]'",
        'dimensions = \'{"nowhere": "value"}\'',
        'cells = replace(cells, \'"subjects":\', \'"subjects":"x","zz":\')',
        "additive = '7'",
    ],
)
def test_a_damaged_release_in_the_ledger_is_named(ledger: SQLiteLedger, damage: str) -> None:
    with sqlite3.connect(ledger.path) as con:
        con.execute(f"UPDATE releases SET {damage}")
    with pytest.raises(DataError) as caught:
        ledger.held("partner", "meters")
    assert caught.value.field == "ledger" and "edited or damaged" in caught.value.detail


def test_another_applications_database_is_not_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(DataError, match="holds other tables"):
        SQLiteLedger(path)
    with sqlite3.connect(path) as con:
        tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master")]
    assert tables == ["users"]


def test_a_ledger_locked_by_another_release_says_so(
    ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said "is not a ledger: database is locked".
    monkeypatch.setattr(ledger_module, "BUSY_SECONDS", 0.1)
    other = sqlite3.connect(ledger.path)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DataError) as caught:
            SQLiteLedger(ledger.path)
    finally:
        other.close()
    assert caught.value.code == "ledger_busy" and "in use by another release" in caught.value.detail
    assert len(SQLiteLedger(ledger.path).held("partner", "meters")) == 1

"""Attacks on releases a partner holds together: each must recover nothing.

Each attack is written as the attacker's own LP (scipy, independent of the engine's audit) over
every number the partner received, and must leave the target's subjects interval at least k wide.
Each runs with complements chosen by the exact method and by the greedy one. Every release also
passes the audit from the published files with those the partner held (``partage audit --held``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from anonymization import exact, suppression
from anonymization.errors import AuditFailure
from anonymization.hierarchies import CategoricalHierarchy, TimeHierarchy, builtin
from anonymization.ledger import SQLiteLedger
from anonymization.manifest import Manifest, read_manifest
from anonymization.plan import AggregatePlan, Dimension, Filter, Measure
from anonymization.protection import Protection
from anonymization.reaudit import reaudit
from anonymization.release import Held, Release, run_release

K = 5
GEO = builtin("geo_fr")
assert GEO is not None


@pytest.fixture(autouse=True, params=["exact", "greedy"])
def method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Complements by the exact method (these tables are small) or, forced, the greedy one."""
    if request.param == "greedy":
        monkeypatch.setattr(exact, "MAX_SIZE", 0)
    return str(request.param)


def meters() -> pd.DataFrame:
    """Meters in three communes of département 06 and one of 13; commune 06029 is small, and
    two of commune 06088's meters are on tariff ``tempo``."""
    homes = [("06088", "base")] * 28 + [("06088", "tempo")] * 2 + [("06029", "base")] * 2
    homes += [("06004", "base")] * 12 + [("13055", "base")] * 40
    rows = []
    for number, (commune, tariff) in enumerate(homes):
        for month in ("2025-01-05", "2025-02-05"):
            rows.append((f"M{number:03d}", commune, tariff, month, 10.0 + number))
    return pd.DataFrame(rows, columns=["meter", "commune", "tariff", "date", "kwh"])


def plan(level: str | None, *, totals: bool = False, exclude: str | None = None) -> AggregatePlan:
    assert GEO is not None
    dims = () if level is None else (Dimension("commune", GEO, "commune", level),)
    tariff = CategoricalHierarchy("tariff")
    filters = (
        (Filter("tariff", tariff, "value", "value", tuple(t for t in ("base",) if t != exclude)),)
        if exclude
        else ()
    )
    return AggregatePlan(
        subject="meter",
        dimensions=dims,
        measures=(Measure("kwh", "sum"), Measure(None, "subjects")),
        protection=Protection(k=K),
        filters=filters,
        totals=totals,
    )


def received(ledger: SQLiteLedger, plans: list[AggregatePlan]) -> list[Held]:
    """What the partner holds, read back from the ledger file, each with its plan."""
    return list(zip(ledger.held("partner", "meters"), plans, strict=True))


FILES: dict[Path, list[tuple[pd.DataFrame, Manifest]]] = {}


def deliver(ledger: SQLiteLedger, given: list[AggregatePlan], new: AggregatePlan) -> Release:
    """Release ``new`` to the partner through the ledger; the audit from the published files,
    with those of every release delivered before, passes (``partage audit --held``)."""
    release = run_release(meters(), new, held=received(ledger, given))
    ledger.record("partner", release.held("meters", {}))
    given.append(new)
    files = FILES.setdefault(ledger.path, [])
    manifest = read_manifest(json.loads(json.dumps(release.summary())))
    checked = reaudit(release.table, manifest, held=files, hierarchies={"commune": GEO})
    assert checked.joined + checked.other_populations == len(files)
    files.append((release.table, manifest))
    return release


def value(release: Release, column: str, label: str) -> tuple[str, float | None, int | None]:
    row = release.table[release.table[column] == label].iloc[0]
    subjects = None if pd.isna(row["subjects"]) else int(row["subjects"])
    return str(row["status"]), subjects, row["reason"]


def attacker_interval(
    unknowns: int, equations: list[tuple[list[float], float]], target: int
) -> tuple[float, float]:
    """Bounds of unknown ``target`` given ``sum(coef * unknown) == rhs``, unknowns >= 0."""
    a = np.array([coefs for coefs, _ in equations])
    b = np.array([rhs for _, rhs in equations])
    bounds = []
    for sense in (1.0, -1.0):
        cost = np.zeros(unknowns)
        cost[target] = sense
        result = linprog(cost, A_eq=a, b_eq=b, bounds=[(0, None)] * unknowns, method="highs")
        bounds.append(sense * result.fun if result.status == 0 else np.inf)
    return bounds[0], bounds[1]


def test_a_release_of_no_cells_is_held_and_changes_nothing(tmp_path: Path) -> None:
    # A filter that matches nothing releases an empty table; the ledger keeps it (as ``[]``),
    # and reading it back must neither fail nor change what later releases publish.
    ledger, given = SQLiteLedger(tmp_path / "ledger.db"), []
    tariff = CategoricalHierarchy("tariff")
    nowhere = (Filter("tariff", tariff, "value", "value", ("nuclear",)),)
    for totals in (False, True, True):
        empty = deliver(ledger, given, replace(plan("commune", totals=totals), filters=nowhere))
        assert empty.table.empty
    assert len(ledger.held("partner", "meters")) == 3
    after = deliver(ledger, given, plan("commune", totals=True))
    alone = run_release(meters(), plan("commune", totals=True))
    pd.testing.assert_frame_equal(after.table, alone.table)


def test_two_overlapping_filtered_requests_do_not_isolate_the_difference(tmp_path: Path) -> None:
    ledger, given = SQLiteLedger(tmp_path / "ledger.db"), []
    everything = deliver(ledger, given, plan("commune"))
    assert value(everything, "commune", "06088")[0] == "released"
    without_tempo = deliver(ledger, given, plan("commune", totals=True, exclude="tempo"))
    status, subjects, reason = value(without_tempo, "commune", "06088")
    assert status == "suppressed" and reason == "differencing" and subjects is None
    table = without_tempo.table
    hidden = table.index[table["status"] == "suppressed"].tolist()
    total = table.loc[table["commune"] == "*", "subjects"]
    assert total.notna().all(), "the total is published, so a complement must hide 06088"
    known = table.loc[(table["status"] == "released") & (table["commune"] != "*"), "subjects"]
    target = hidden.index(table.index[table["commune"] == "06088"][0])
    equations = [([1.0] * len(hidden), float(total.iloc[0]) - float(known.sum()))]
    low, high = attacker_interval(len(hidden), equations, target)
    assert high - low >= K
    assert {e["reason"] for e in without_tempo.audit.to_manifest()["cells"]} >= {"differencing"}


def test_a_total_and_all_but_one_of_its_cells(tmp_path: Path) -> None:
    ledger, given = SQLiteLedger(tmp_path / "ledger.db"), []
    total = deliver(ledger, given, plan(None))
    grand = int(total.table["subjects"].iloc[0])
    by_commune = deliver(ledger, given, plan("commune"))
    table = by_commune.table
    assert value(by_commune, "commune", "06029")[2] == "k"
    hidden = table.index[table["status"] == "suppressed"].tolist()
    assert len(hidden) >= 2 and (table.loc[hidden, "reason"] == "secondary").any()
    known = float(table.loc[table["status"] == "released", "subjects"].sum())
    target = hidden.index(table.index[table["commune"] == "06029"][0])
    low, high = attacker_interval(len(hidden), [([1.0] * len(hidden), grand - known)], target)
    assert high - low >= K
    # Released without the ledger, the communes give 06029 away: the audit from the files, with
    # the total held, says so.
    alone = run_release(meters(), plan("commune"))
    manifest = read_manifest(json.loads(json.dumps(alone.summary())))
    with pytest.raises(AuditFailure, match=r"cell \(commune=06029\).* wider than \[2, 2\]"):
        reaudit(alone.table, manifest, held=FILES[ledger.path][:1])


def test_a_hierarchy_level_released_twice(tmp_path: Path) -> None:
    ledger, given = SQLiteLedger(tmp_path / "ledger.db"), []
    departements = deliver(ledger, given, plan("departement"))
    assert set(departements.table["status"]) == {"released"}
    d06 = int(departements.table.set_index("commune").loc["06", "subjects"])
    communes = deliver(ledger, given, plan("commune"))
    table = communes.table
    in06 = table[table["commune"].str.startswith("06")]
    hidden = in06.index[in06["status"] == "suppressed"].tolist()
    assert value(communes, "commune", "06029")[2] == "k" and len(hidden) >= 2
    known = float(in06.loc[in06["status"] == "released", "subjects"].sum())
    target = hidden.index(table.index[table["commune"] == "06029"][0])
    low, high = attacker_interval(len(hidden), [([1.0] * len(hidden), d06 - known)], target)
    assert high - low >= K
    again = deliver(ledger, given, plan("commune"))
    assert (again.table["status"] == table["status"]).all()


def test_two_tables_by_different_dimensions_without_totals(tmp_path: Path) -> None:
    """By commune, then by month, neither with totals: both add up to the same grand total,
    which neither publishes, so a suppressed commune's kWh would be the months' sum minus the
    communes published."""
    ledger, given = SQLiteLedger(tmp_path / "ledger.db"), []
    by_commune = deliver(ledger, given, plan("commune"))
    assert value(by_commune, "commune", "06029")[2] == "k"
    month = Dimension("date", TimeHierarchy(), "day", "month")
    by_month = deliver(ledger, given, replace(plan(None), dimensions=(month,)))
    communes, months = by_commune.table, by_month.table
    assert (months["status"] == "suppressed").any(), "a month must hide the grand total"
    shown = months[months["status"] == "released"]
    # Unknowns: the suppressed communes, then the suppressed months; one equation: the
    # communes' sum equals the months' sum (the grand total of both).
    suppressed_communes = int((communes["status"] == "suppressed").sum())
    suppressed_months = int((months["status"] == "suppressed").sum())
    coefs = [1.0] * suppressed_communes + [-1.0] * suppressed_months
    published = float(shown["kwh_sum"].sum()) - float(
        communes.loc[communes["status"] == "released", "kwh_sum"].sum()
    )
    target = (
        communes.index[communes["status"] == "suppressed"]
        .tolist()
        .index(communes.index[communes["commune"] == "06029"][0])
    )
    low, high = attacker_interval(len(coefs), [(coefs, published)], target)
    truth = float(by_commune.cells.set_index("commune").loc["06029", "kwh_sum"])
    assert low <= truth * 0.85 and high >= truth * 1.15


def test_a_release_nothing_can_protect_is_refused_before_complements_are_sought(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three tempo meters use 99 % of the energy and the partner holds the communes' total. By
    tariff, tempo's kWh is at most that total, within 15 % of its value whatever is suppressed:
    the release is refused at once, naming the cell, without a search for complements."""
    homes = [("06088", "base", 1.0)] * 30 + [("13055", "base", 1.0)] * 9
    homes += [("13055", "tempo", 1000.0)] * 3
    rows = [(f"M{n:03d}", c, t, "2025-01-05", kwh) for n, (c, t, kwh) in enumerate(homes)]
    data = pd.DataFrame(rows, columns=["meter", "commune", "tariff", "date", "kwh"])
    by_commune = replace(plan("commune"), totals=True)
    held = run_release(data, by_commune)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    ledger.record("partner", held.held("meters", {}))
    tariff = Dimension("tariff", CategoricalHierarchy("tariff"), "value", "value")

    def never(*_: object) -> None:
        raise AssertionError("complements were sought")

    monkeypatch.setattr(suppression, "secondary_suppression", never)
    with pytest.raises(AuditFailure, match=r"\(tariff=tempo\).*whatever else is suppressed"):
        run_release(
            data,
            replace(plan(None), dimensions=(tariff,)),
            held=received(ledger, [by_commune]),
        )

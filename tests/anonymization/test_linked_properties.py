"""Releases a partner holds together, on random tables: whatever two or three releases of one
population (any dimensions, with or without totals) a partner receives in turn through the
ledger, no protected cell of any of them can be narrowed down by combining them all.

The attacker here knows more than the published relations: every published sum is the sum of
the table's finest cells (its distinct (a, b, c) combinations), all of them non-negative, and
it solves its own LP over those (scipy, nothing shared with the engine). Each protected sum
must keep an interval reaching p % below and above the truth. A cell suppressed once stays
suppressed when the same key is released again. A release that nothing can protect beside
what the partner holds (a protected sum equal to a held total, say) is refused, not delivered.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from anonymization.errors import AuditFailure
from anonymization.hierarchies import TOP, CategoricalHierarchy
from anonymization.ledger import SQLiteLedger
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import IntervalRequirement, Protection
from anonymization.release import Held, run_release
from tests.anonymization.test_secondary_properties import tables

DIMENSIONS = [(), ("a",), ("b",), ("a", "b"), ("b", "c"), ("a", "c"), ("a", "b", "c")]
PROTECTED = {"k", "dominance", "p_percent", "differencing"}


def plan(dims: tuple[str, ...], totals: bool, k: int, p: float) -> AggregatePlan:
    return AggregatePlan(
        subject="subject",
        dimensions=tuple(Dimension(d, CategoricalHierarchy(d), "value", "value") for d in dims),
        measures=(Measure("x", "sum"), Measure(None, "subjects")),
        protection=Protection(k=k, interval=IntervalRequirement(p=p)),
        totals=totals,
    )


def covered(atoms: pd.DataFrame, row: pd.Series, dims: tuple[str, ...]) -> np.ndarray:
    """Mask of the finest cells a published cell adds up."""
    mask = np.ones(len(atoms), dtype=bool)
    for d in dims:
        if row[d] != TOP:
            mask &= (atoms[d] == row[d]).to_numpy()
    return mask


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=tables(),
    sequence=st.lists(
        st.tuples(st.sampled_from(DIMENSIONS), st.booleans()), min_size=2, max_size=3
    ),
    k=st.integers(2, 6),
    p=st.integers(5, 40).map(float),
)
def test_releases_held_together_narrow_no_protected_sum(
    table: pd.DataFrame, sequence: list[tuple[tuple[str, ...], bool]], k: int, p: float
) -> None:
    atoms = table.groupby(["a", "b", "c"], as_index=False)["x"].sum()
    note(f"atoms:\n{atoms}\nsequence {sequence} k {k} p {p}")
    equations: list[tuple[np.ndarray, float]] = []
    targets: list[tuple[np.ndarray, float]] = []
    suppressed_before: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}
    with TemporaryDirectory() as folder:
        ledger = SQLiteLedger(Path(folder) / "ledger.db")
        plans: list[AggregatePlan] = []
        for dims, totals in sequence:
            held: list[Held] = list(zip(ledger.held("partner", "t"), plans, strict=True))
            new = plan(dims, totals, k, p)
            try:
                release = run_release(table, new, held=held)
            except AuditFailure:
                # No pattern protects it beside what the partner holds: nothing is released.
                continue
            note(f"release {dims} totals {totals}:\n{release.table}")
            ledger.record("partner", release.held("t", {}))
            plans.append(new)
            truth = release.cells.reset_index(drop=True)
            for position, row in release.table.reset_index(drop=True).iterrows():
                key = (dims, tuple(str(row[d]) for d in dims))
                hidden = row["status"] == "suppressed"
                assert hidden or not suppressed_before.get(key), f"{key} published again"
                suppressed_before[key] = suppressed_before.get(key, False) or hidden
                mask = covered(atoms, row, dims)
                if not hidden:
                    equations.append((mask.astype(float), float(row["x_sum"])))
                elif row["reason"] in PROTECTED:
                    targets.append((mask.astype(float), float(truth["x_sum"].iloc[position])))
    if not targets:
        return
    a_eq = np.array([coefs for coefs, _ in equations]) if equations else None
    b_eq = np.array([rhs for _, rhs in equations]) if equations else None
    for coefs, value in targets:
        reach = []
        for sense in (1.0, -1.0):
            result = linprog(
                sense * coefs, A_eq=a_eq, b_eq=b_eq, bounds=[(0, None)] * len(atoms), method="highs"
            )
            assert result.status in (0, 3), result.message  # solved, or unbounded
            reach.append(sense * result.fun if result.status == 0 else -sense * np.inf)
        low, high = reach
        margin = value * p / 100
        assert low <= value - margin + 1e-6 * (1 + value), (coefs, value, low, high)
        assert high >= value + margin - 1e-6 * (1 + value), (coefs, value, low, high)

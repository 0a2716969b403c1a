"""Property tests: on random tables and random policies, every released cell is protected and
equals an independent pandas computation; every cell below k is suppressed (by its own rule;
only complements, with margins, are suppressed for reason ``secondary``)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymization.hierarchies import CategoricalHierarchy
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import DominanceRule, PPercentRule, Protection
from anonymization.release import run_release


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    size = draw(st.integers(min_value=1, max_value=120))
    subjects = draw(st.integers(min_value=1, max_value=40))
    return pd.DataFrame(
        {
            "subject": [f"s{draw(st.integers(0, subjects - 1))}" for _ in range(size)],
            "a": [draw(st.sampled_from(["a0", "a1", "a2", "06"])) for _ in range(size)],
            "b": [draw(st.sampled_from(["b0", "b1", "b2"])) for _ in range(size)],
            "x": [float(draw(st.integers(0, 1000))) for _ in range(size)],
        }
    )


@st.composite
def protections(draw: st.DrawFn) -> Protection:
    dominance = draw(
        st.none()
        | st.builds(
            DominanceRule,
            n=st.integers(1, 3),
            percent=st.integers(30, 99).map(float),
            measure=st.just("x"),
        )
    )
    p_rule = draw(
        st.none() | st.builds(PPercentRule, p=st.integers(1, 50).map(float), measure=st.just("x"))
    )
    return Protection(k=draw(st.integers(2, 8)), dominance=dominance, p_percent=p_rule)


def reference(table: pd.DataFrame, dims: list[str], totals: bool) -> pd.DataFrame:
    """Cells computed with pandas only: distinct subjects, sums, per-subject contributions."""
    frames = []
    sizes = range(len(dims), -1, -1) if totals else [len(dims)]
    for size in sizes:
        for kept in combinations(dims, size):
            per_subject = table.groupby([*kept, "subject"], as_index=False)["x"].sum()
            if kept:
                grouped = per_subject.groupby(list(kept))
                cells = grouped.agg(
                    subjects=("subject", "nunique"),
                    x_sum=("x", "sum"),
                    contributions=("x", lambda s: sorted(s, reverse=True)),
                )
                cells = cells.reset_index()
            else:
                cells = pd.DataFrame(
                    {
                        "subjects": [per_subject["subject"].nunique()],
                        "x_sum": [per_subject["x"].sum()],
                        "contributions": [sorted(per_subject["x"], reverse=True)],
                    }
                )
            for dim in dims:
                if dim not in kept:
                    cells[dim] = "*"
            frames.append(cells)
    return pd.concat(frames, ignore_index=True)


def unsafe(row: pd.Series, protection: Protection) -> bool:
    top = [*list(row["contributions"]), 0.0, 0.0, 0.0]
    total = row["x_sum_ref"]
    if row["subjects_ref"] < protection.k:
        return True
    rule = protection.dominance
    if rule is not None and total > 0 and sum(top[: rule.n]) > rule.percent / 100 * total:
        return True
    p_rule = protection.p_percent
    return p_rule is not None and total - top[0] - top[1] < p_rule.p / 100 * top[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=tables(),
    protection=protections(),
    totals=st.booleans(),
    dims=st.sampled_from([["a"], ["a", "b"], ["b", "a"]]),
)
def test_released_cells_are_protected_and_exact(
    table: pd.DataFrame, protection: Protection, totals: bool, dims: list[str]
) -> None:
    plan = AggregatePlan(
        subject="subject",
        dimensions=tuple(Dimension(d, CategoricalHierarchy(d), "value", "value") for d in dims),
        measures=(Measure("x", "sum"), Measure(None, "subjects")),
        protection=protection,
        totals=totals,
    )
    released = run_release(table, plan).table
    expected = reference(table, dims, totals)
    merged = expected.merge(released, on=dims, how="outer", indicator=True, suffixes=("_ref", ""))
    assert (merged["_merge"] == "both").all(), "the release and the reference have different cells"
    for _, row in merged.iterrows():
        if unsafe(row, protection):
            assert row["status"] == "suppressed" and row["reason"] != "secondary"
            assert pd.isna(row["subjects"]) and pd.isna(row["x_sum"])
        elif row["status"] == "suppressed":
            assert row["reason"] == "secondary" and totals
        else:
            assert row["subjects"] == row["subjects_ref"] >= protection.k
            assert np.isclose(row["x_sum"], row["x_sum_ref"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), coarse=st.booleans(), filtered=st.booleans())
def test_additive_dimensions_match_a_pandas_reference(
    table: pd.DataFrame, coarse: bool, filtered: bool
) -> None:
    """A dimension is additive when each subject has one label there: read on the scan's keys,
    and again on the labels where a lookup hierarchy merges keys (a0 and a1 into one group)."""
    from anonymization.cells import compute_cells
    from anonymization.hierarchies import TableHierarchy
    from anonymization.plan import Filter

    merge = TableHierarchy(
        "merge", [["a0", "A", "*"], ["a1", "A", "*"], ["a2", "B", "*"], ["06", "B", "*"]]
    )
    level = merge.levels[1] if coarse else merge.levels[0]
    # A value filter at the coarse level of a lookup hierarchy is applied after the lookup.
    filters = (Filter("a", merge, merge.levels[0], merge.levels[1], values=("A",)),)
    plan = AggregatePlan(
        subject="subject",
        dimensions=(
            Dimension("a", merge, merge.levels[0], level),
            Dimension("b", CategoricalHierarchy("b"), "value", "value"),
        ),
        measures=(Measure(None, "subjects"),),
        protection=Protection(k=2),
        filters=filters if filtered else (),
    )
    kept = table[table["a"].isin(["a0", "a1"])] if filtered else table
    if kept.empty:
        return
    labelled = kept.assign(a=kept["a"].map(merge.generalize(list(kept["a"]), level)))
    expected = [d for d in ("a", "b") if labelled.groupby("subject")[d].nunique().max() == 1]
    assert compute_cells(table, plan).attrs["additive"] == expected

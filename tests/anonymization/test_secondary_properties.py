"""Property tests of secondary suppression: on random tables with totals, an independent LP over
the published table finds every protected cell's interval at least as wide as required, and the
manifest's audit gives the same bounds."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymization import audit
from anonymization.hierarchies import CategoricalHierarchy
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import IntervalRequirement, Protection
from anonymization.release import Release, run_release
from tests.anonymization.reference_audit import reference_intervals


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    """Subjects with a fixed ``a`` (so subjects add up along ``a``) and rows spread over ``b``
    and ``c`` (so they do not)."""
    subjects = draw(st.integers(min_value=1, max_value=30))
    home = [draw(st.sampled_from(["a0", "a1", "a2"])) for _ in range(subjects)]
    size = draw(st.integers(min_value=1, max_value=80))
    who = [draw(st.integers(0, subjects - 1)) for _ in range(size)]
    return pd.DataFrame(
        {
            "subject": [f"s{w}" for w in who],
            "a": [home[w] for w in who],
            "b": [draw(st.sampled_from(["b0", "b1", "b2"])) for _ in range(size)],
            "c": [draw(st.sampled_from(["c0", "c1"])) for _ in range(size)],
            "x": [float(draw(st.integers(0, 500))) for _ in range(size)],
        }
    )


def protected_release(table: pd.DataFrame, dims: list[str], k: int, p: float) -> Release:
    plan = AggregatePlan(
        subject="subject",
        dimensions=tuple(Dimension(d, CategoricalHierarchy(d), "value", "value") for d in dims),
        measures=(Measure("x", "sum"), Measure(None, "subjects")),
        protection=Protection(k=k, interval=IntervalRequirement(p=p)),
        totals=True,
    )
    return run_release(table, plan)


# Random tables with totals, k, p and dimensions, for the properties below.
RANDOM_RELEASES = given(
    table=tables(),
    k=st.integers(2, 6),
    p=st.integers(5, 40).map(float),
    dims=st.sampled_from([["a", "b"], ["b", "c"], ["a", "b", "c"]]),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@RANDOM_RELEASES
def test_no_protected_cell_can_be_narrowed(
    table: pd.DataFrame, k: int, p: float, dims: list[str]
) -> None:
    check_protected(table, k, p, dims)


@SETTINGS
@RANDOM_RELEASES
def test_local_witnesses_keep_every_protected_cell_wide(
    table: pd.DataFrame, k: int, p: float, dims: list[str]
) -> None:
    """The complement search's local witnesses (small LPs over a sub-table, the rest at its true
    values), used on large groups, forced on every group: the result still passes the
    independent LP."""
    with patch.object(audit, "LOCAL_FROM", 0):
        check_protected(table, k, p, dims)


def check_protected(table: pd.DataFrame, k: int, p: float, dims: list[str]) -> None:
    """Every protected cell's interval, by an independent LP over the published table, is as
    wide as required, and the manifest's audit gives the same bounds."""
    release = protected_release(table, dims, k, p)
    published = release.table
    truth = release.cells.reset_index(drop=True)
    additive = {d for d in dims if table.groupby("subject")[d].nunique().max() == 1}
    subjects = reference_intervals(published, dims, "subjects", additive, True)
    sums = reference_intervals(published, dims, "x_sum", additive, True)
    audited = release.audit.to_manifest()["cells"]
    assert len(audited) == (published["status"] == "suppressed").sum()
    for entry, (row, (low, high)) in zip(audited, sorted(subjects.items()), strict=True):
        assert entry["key"] == {d: published[d].iloc[row] for d in dims}
        assert np.isclose(entry["subjects"]["lower"], low, atol=1e-5)
        assert (entry["subjects"]["upper"] is None) == np.isinf(high)
        if np.isfinite(high):
            assert np.isclose(entry["subjects"]["upper"], high, atol=1e-5)
        if published["reason"].iloc[row] == "secondary":
            continue
        assert high - low >= k - 1e-6
        value = truth["x_sum"].iloc[row]
        sum_low, sum_high = sums[row]
        assert sum_low <= value * (1 - p / 100) + 1e-6
        assert sum_high >= value * (1 + p / 100) - 1e-6


def test_a_margin_never_gives_away_its_single_suppressed_cell() -> None:
    rows = [
        (f"s{i}", "a0" if i < 2 else "a1" if i < 20 else "a2", "b0", "c0", 1.0) for i in range(40)
    ]
    table = pd.DataFrame(rows, columns=["subject", "a", "b", "c", "x"])
    release = protected_release(table, ["a"], k=5, p=15.0)
    status = dict(zip(release.table["a"], release.table["status"], strict=True))
    assert status["a0"] == "suppressed"
    assert sum(s == "suppressed" for s in status.values()) >= 2
    assert release.counts()["complements"] >= 1

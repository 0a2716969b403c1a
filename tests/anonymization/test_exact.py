"""The exact method of secondary suppression (Benders' decomposition, unless the table is
large): its complements pass the independent LP, no pattern with fewer cells would, and it never
needs more cells than the greedy method; the manifest says which method chose them. The greedy
method's last pass leaves no complement that could be published again."""

from __future__ import annotations

import itertools
import math
from unittest.mock import patch

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from anonymization import exact, secondary
from anonymization.release import run_release
from anonymization.secondary import EXACT, GREEDY
from tests.anonymization.reference_audit import meets_requirement, reference_intervals
from tests.anonymization.test_noise import SECRET, grid_plan
from tests.anonymization.test_secondary_properties import (
    RANDOM_RELEASES,
    SETTINGS,
    additive_dims,
    protected_release,
    tables,
)

SMALL = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MAX_TRIALS = 120  # patterns with one fewer complement checked at most per example


def protects(
    published: pd.DataFrame,
    truth: pd.DataFrame,
    dims: list[str],
    k: int,
    p: float,
    additive: set[str],
) -> bool:
    """Whether, by the independent LP, every primary cell of ``published`` (a release with
    totals, its status possibly changed) keeps a subjects interval k wide and a sum interval
    p % either side."""
    subjects = reference_intervals(published, dims, "subjects", additive, True)
    sums = reference_intervals(published, dims, "x_sum", additive, True)
    return all(
        meets_requirement(bounds, sums[row], truth["x_sum"].iloc[row], k, p)
        for row, bounds in subjects.items()
        if published["reason"].iloc[row] not in ("secondary", "<chosen>")
    )


@SMALL
@given(table=tables(), k=st.integers(2, 6), p=st.integers(5, 40).map(float))
def test_no_pattern_with_fewer_complements_protects(table: pd.DataFrame, k: int, p: float) -> None:
    """Protection only grows with the cells suppressed, so if fewer complements sufficed, some
    set of exactly one fewer would: none does, by the independent LP."""
    dims = ["a", "b"]
    release = protected_release(table, dims, k, p)
    published, truth = release.table, release.cells.reset_index(drop=True)
    assert release.counts().get("complements_method") == EXACT
    chosen = int((published["reason"] == "secondary").sum())
    assume(chosen > 0)
    additive = additive_dims(table, dims)
    primary = published["reason"].notna() & (published["reason"] != "secondary")
    candidates = published.index[~primary].tolist()
    assume(math.comb(len(candidates), chosen - 1) <= MAX_TRIALS)
    shown = published.assign(subjects=truth["subjects"], x_sum=truth["x_sum"])
    for fewer in itertools.combinations(candidates, chosen - 1):
        trial = shown.copy()
        trial.loc[~primary, ["status", "reason"]] = ["released", None]
        trial.loc[list(fewer), ["status", "reason"]] = ["suppressed", "<chosen>"]
        assert not protects(trial, truth, dims, k, p, additive), fewer


@settings(SETTINGS, max_examples=20)
@RANDOM_RELEASES
def test_the_exact_method_never_needs_more_complements_than_the_greedy_one(
    table: pd.DataFrame, k: int, p: float, dims: list[str]
) -> None:
    exact_release = protected_release(table, dims, k, p)
    with patch.object(exact, "MAX_SIZE", 0):
        greedy_release = protected_release(table, dims, k, p)
    assert exact_release.counts()["complements"] <= greedy_release.counts()["complements"]


def test_a_table_too_large_for_the_program_falls_back_to_the_greedy_method() -> None:
    rows = [(f"s{i}", f"a{i % 3}", f"b{i % 4}", "c0", float(i)) for i in range(40)]
    rows += [("rare", "a0", "b9", "c0", 5.0)]
    table = pd.DataFrame(rows, columns=["subject", "a", "b", "c", "x"])
    small = protected_release(table, ["a", "b"], k=3, p=15.0)
    with patch.object(exact, "MAX_SIZE", 10):
        large = protected_release(table, ["a", "b"], k=3, p=15.0)
    assert small.counts()["complements_method"] == EXACT
    assert large.counts()["complements_method"] == GREEDY
    assert small.summary()["complements_method"] == EXACT
    assert small.counts()["complements"] >= 1 and large.counts()["complements"] >= 1


@pytest.mark.parametrize("limit", ["MAX_SOLVES", "MAX_ITERATIONS"])
def test_past_its_counted_work_the_exact_method_gives_way_to_the_greedy_one(limit: str) -> None:
    """The guards count LPs and simplex iterations, not seconds: the same table gets the same
    method on any machine, under any load."""
    rows = [(f"s{i}", f"a{i % 3}", f"b{i % 4}", "c0", float(i)) for i in range(40)]
    rows += [("rare", "a0", "b9", "c0", 5.0)]
    table = pd.DataFrame(rows, columns=["subject", "a", "b", "c", "x"])
    with patch.object(exact, limit, -1):
        stopped = protected_release(table, ["a", "b"], k=3, p=15.0)
    assert stopped.counts()["complements_method"] == GREEDY
    assert protected_release(table, ["a", "b"], k=3, p=15.0).counts()["complements_method"] == EXACT


def test_past_its_counted_work_the_greedy_method_keeps_the_complements_not_tried() -> None:
    """The last pass (complements published again) stops after ``MAX_LPS`` LPs: what it has not
    tried stays suppressed, and the release still passes its audit."""
    rows = [(f"s{i}", f"a{i % 3}", f"b{i % 4}", "c0", float(i)) for i in range(40)]
    rows += [("rare", "a0", "b9", "c0", 5.0)]
    table = pd.DataFrame(rows, columns=["subject", "a", "b", "c", "x"])
    with patch.object(exact, "MAX_SIZE", 0):
        pruned = protected_release(table, ["a", "b"], k=3, p=15.0)
        with patch.object(secondary, "MAX_LPS", 0):
            kept = protected_release(table, ["a", "b"], k=3, p=15.0)
    assert pruned.counts()["complements"] < kept.counts()["complements"]
    assert pruned.counts()["complements_method"] == GREEDY
    # The manifest says the pass did not reach them: none of the complements was tried.
    untried = kept.counts()["complements"]
    assert kept.counts()["complements_method"] == (
        f"{GREEDY}: 0 of {untried} complements tried, the rest past its 0 LPs"
    )
    for release in (pruned, kept):
        truth = release.cells.reset_index(drop=True)
        shown = release.table.assign(subjects=truth["subjects"], x_sum=truth["x_sum"])
        assert protects(shown, truth, ["a", "b"], 3, 15.0, additive_dims(table, ["a", "b"]))


@SMALL
@RANDOM_RELEASES
def test_the_greedy_method_leaves_no_complement_that_could_be_published(
    table: pd.DataFrame, k: int, p: float, dims: list[str]
) -> None:
    """Publishing any one of the greedy method's complements would let the independent LP
    narrow some protected cell."""
    with patch.object(exact, "MAX_SIZE", 0):
        release = protected_release(table, dims, k, p)
    published, truth = release.table, release.cells.reset_index(drop=True)
    additive = additive_dims(table, dims)
    shown = published.assign(subjects=truth["subjects"], x_sum=truth["x_sum"])
    for row in published.index[published["reason"] == "secondary"]:
        trial = shown.copy()
        trial.loc[row, ["status", "reason"]] = ["released", None]
        assert not protects(trial, truth, dims, k, p, additive), row


def test_noisy_counts_published_near_zero_do_not_let_the_attacker_go_below_zero() -> None:
    """Counts published with noise (±2 here) may read 1 for a true count of 3, but no count is
    below 0: an attacker's solution may not take a cell there, published or not (a pattern
    found with such solutions failed the audit, found by the noise property test)."""
    rows = [
        ("s5", "a2", "b1", 125.0),
        ("s0", "a2", "b2", 87.0),
        ("s3", "a0", "b0", 89.0),
        ("s2", "a0", "b1", 263.0),
        ("s7", "a1", "b0", 307.0),
        ("s7", "a1", "b0", 140.0),
        ("s0", "a2", "b0", 356.0),
        ("s1", "a2", "b0", 70.0),
        ("s1", "a2", "b1", 349.0),
        ("s3", "a0", "b1", 345.0),
    ]
    table = pd.DataFrame(rows, columns=["subject", "a", "b", "x"])
    release = run_release(table, grid_plan(["a", "b"], 4, True), noise_secret=SECRET)
    assert release.counts()["complements_method"] == EXACT
    assert release.audit.to_manifest()["passed"]

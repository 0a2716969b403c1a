"""Property tests of secondary suppression: on random tables with totals, an independent LP over
the published table finds every protected cell's interval at least as wide as required, and the
manifest's audit gives the same bounds."""

from __future__ import annotations

import itertools
import json
from unittest.mock import patch

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymization import audit, exact, solver
from anonymization.hierarchies import TOP, CategoricalHierarchy
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import IntervalRequirement, Protection
from anonymization.reaudit import reaudit
from anonymization.release import Release, run_release
from anonymization.suppression import SubTables
from tests.anonymization.reference_audit import meets_requirement, reference_intervals


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    """Subjects with a fixed ``a`` (so subjects add up along ``a``) and rows spread over ``b``
    and ``c`` (so they do not). Sometimes each subject also has a fixed ``c`` and a row in every
    ``b``, as a meter has a reading every month: then ``b``'s margins leave no room between a
    cell and its total, which the audit finds and merges (``Solver._merge``)."""
    subjects = draw(st.integers(min_value=1, max_value=30))
    home = [draw(st.sampled_from(["a0", "a1", "a2"])) for _ in range(subjects)]
    size = draw(st.integers(min_value=1, max_value=80))
    who = [draw(st.integers(0, subjects - 1)) for _ in range(size)]
    b = [draw(st.sampled_from(["b0", "b1", "b2"])) for _ in range(size)]
    c = [draw(st.sampled_from(["c0", "c1"])) for _ in range(size)]
    if draw(st.booleans()):
        kind = [draw(st.sampled_from(["c0", "c1"])) for _ in range(subjects)]
        who = [w for w in range(subjects) for _ in range(3)]
        b = ["b0", "b1", "b2"] * subjects
        c = [kind[w] for w in who]
    return pd.DataFrame(
        {
            "subject": [f"s{w}" for w in who],
            "a": [home[w] for w in who],
            "b": b,
            "c": c,
            "x": [float(draw(st.integers(0, 500))) for _ in who],
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
    """Complements by the greedy method (the one of large tables), with witnesses from small
    LPs (over tiles and sub-tables, the rest of the group at a base solution), used on large
    groups, forced on every group with tiles of a few cells, and the bounds solved by two HiGHS
    models in threads (also kept for large groups): the complements still pass the independent
    LP, the audit's bounds are still exact, and the audit from the files alone (its base found
    by an LP) gives the same bounds."""
    with (
        patch.object(exact, "MAX_SIZE", 0),
        patch.object(audit, "LOCAL_FROM", 0),
        patch.object(solver, "TILE_SIZE", 6),
        patch.object(solver, "THREADS", 2),
        patch.object(solver, "THREADS_FROM", 0),
    ):
        release = check_protected(table, k, p, dims)
        reaudit(release.table, json.loads(json.dumps(release.summary())))


def additive_dims(table: pd.DataFrame, dims: list[str]) -> set[str]:
    """The dimensions along which subjects add up (each subject has one label there)."""
    return {d for d in dims if table.groupby("subject")[d].nunique().max() == 1}


def check_protected(table: pd.DataFrame, k: int, p: float, dims: list[str]) -> Release:
    """Every protected cell's interval, by an independent LP over the published table, is as
    wide as required, and the manifest's audit gives the same bounds."""
    release = protected_release(table, dims, k, p)
    published = release.table
    truth = release.cells.reset_index(drop=True)
    additive = additive_dims(table, dims)
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
        assert meets_requirement((low, high), sums[row], truth["x_sum"].iloc[row], k, p)
    return release


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


@given(
    widths=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    share=st.floats(0.05, 1.0),
    size=st.integers(1, 40),
    turn=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_tiles_split_the_cells_along_the_widest_dimension(
    widths: list[int], share: float, size: int, turn: int, seed: int
) -> None:
    """Every cell lies in exactly one tile, except the cells at ``*`` of the dimension split,
    which lie in every tile (they tie the tiles' labels together)."""
    grids = [[f"d{d}_{i}" for i in range(w)] + [TOP] for d, w in enumerate(widths)]
    keys = list(itertools.product(*grids))
    labels = pd.DataFrame(keys, columns=[f"d{d}" for d in range(len(widths))])
    rng = np.random.default_rng(seed)
    cells = np.flatnonzero(rng.random(len(labels)) < share)
    tiles = SubTables(labels).tiles(cells, size, turn)
    if not len(cells):
        assert tiles == []
        return
    counts = pd.Series(np.concatenate(tiles)).value_counts()
    assert set(counts.index) == set(cells.tolist())
    picked = labels.iloc[cells]
    split = max(labels.columns, key=lambda d: picked[d].nunique())
    for cell in cells:
        expected = len(tiles) if labels[split].iloc[cell] == TOP else 1
        assert counts[cell] == expected


@given(
    widths=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    share=st.floats(0.05, 1.0),
    held=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_line_order_keeps_each_line_of_the_widest_dimension_together(
    widths: list[int], share: float, held: int, seed: int
) -> None:
    """The order the audit solves bounds in is a permutation of the cells in which the cells of
    one line along the widest dimension (the same labels elsewhere) are consecutive, the cells
    of held releases last."""
    grids = [[f"d{d}_{i}" for i in range(w)] + [TOP] for d, w in enumerate(widths)]
    labels = pd.DataFrame(
        list(itertools.product(*grids)), columns=[f"d{d}" for d in range(len(widths))]
    )
    rng = np.random.default_rng(seed)
    cells = np.concatenate(
        [np.flatnonzero(rng.random(len(labels)) < share), len(labels) + np.arange(held)]
    )
    rng.shuffle(cells)
    order = SubTables(labels).line_order(cells)
    assert sorted(order.tolist()) == list(range(len(cells)))
    ordered = cells[order]
    mine = ordered[ordered < len(labels)]
    assert (ordered[len(mine) :] >= len(labels)).all()
    if not len(mine):
        return
    picked = labels.iloc[mine].reset_index(drop=True)
    split = max(labels.columns, key=lambda d: picked[d].nunique())
    others = [d for d in labels.columns if d != split]
    line = picked[others].apply(tuple, axis=1) if others else pd.Series([()] * len(picked))
    starts = line.ne(line.shift()).cumsum()  # runs of the same line
    assert starts.groupby(line).nunique().max() == 1

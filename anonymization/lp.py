"""Linear programs over a group of suppressed cells: bound propagation, the HiGHS model, the
inequalities every solution meets with equality and the cells they keep equal."""

from __future__ import annotations

import math
from dataclasses import dataclass

import highspy
import numpy as np
from highspy import _core
from scipy import sparse
from scipy.sparse.csgraph import connected_components

INF = math.inf
IMPLICIT_ROUNDS = 20  # LPs at most to find the inequalities every solution meets with equality
IMPLICIT_SLACK = 1e-6  # slack below which a row counts as met with equality (counts are integers)
SIMPLEX_STRATEGY = 0  # HiGHS chooses: dual simplex from scratch, primal after a new objective


def propagate(
    rows: sparse.csr_matrix,
    row_low: np.ndarray,
    row_high: np.ndarray,
    floor: np.ndarray,
    rounds: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds every feasible solution of ``row_low <= rows @ x <= row_high, x >= floor`` obeys,
    by propagation: each row bounds each of its cells by its bound minus the extreme of the
    others. Valid after any number of rounds (an outer box); an LP can only be tighter, so a
    feasible solution reaching one of these bounds proves it is the LP's optimum too."""
    coo = rows.tocoo()
    row, col, a = coo.row, coo.col, coo.data
    count = rows.shape[0]
    low, high = floor.astype(float), np.full(rows.shape[1], INF)
    with np.errstate(invalid="ignore"):  # infinite bounds are handled explicitly
        for _ in range(rounds):
            least = np.where(a > 0, a * low[col], a * high[col])
            most = np.where(a > 0, a * high[col], a * low[col])
            upper_ax = row_high[row] - _others(row, least, count)  # a * x <= this
            lower_ax = row_low[row] - _others(row, most, count)  # a * x >= this
            upper_ax[np.isnan(upper_ax)] = INF
            lower_ax[np.isnan(lower_ax)] = -INF
            next_high, next_low = high.copy(), low.copy()
            np.minimum.at(next_high, col, np.where(a > 0, upper_ax / a, lower_ax / a))
            np.maximum.at(next_low, col, np.where(a > 0, lower_ax / a, upper_ax / a))
            moved = _moved(high, next_high) | _moved(low, next_low)
            low, high = next_low, next_high
            if not moved.any():
                break
    return low, high


def _moved(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Where a bound changed by more than rounding (from or to infinity counts)."""
    finite = np.isfinite(before) & np.isfinite(after)
    gap = np.abs(np.where(finite, after - before, 0.0))
    moved: np.ndarray = (np.isfinite(before) != np.isfinite(after)) | (
        gap > 1e-9 * (1 + np.abs(np.where(finite, before, 0.0)))
    )
    return moved


def _others(row: np.ndarray, terms: np.ndarray, count: int) -> np.ndarray:
    """Per term, the sum of the other terms of its row (infinite if any other is)."""
    infinite = np.isinf(terms)
    finite_sum = np.bincount(row, weights=np.where(infinite, 0.0, terms), minlength=count)
    plus = np.bincount(row, weights=terms == INF, minlength=count)
    minus = np.bincount(row, weights=terms == -INF, minlength=count)
    rest = finite_sum[row] - np.where(infinite, 0.0, terms)
    rest_plus = plus[row] - (terms == INF)
    rest_minus = minus[row] - (terms == -INF)
    rest = np.where(rest_plus > 0, INF, rest)
    return np.where(rest_minus > 0, np.where(rest_plus > 0, np.nan, -INF), rest)


def highs_model(
    matrix: sparse.spmatrix, floor: float, row_low: np.ndarray, row_high: np.ndarray
) -> _core._Highs:
    """A silent HiGHS model of ``row_low <= matrix @ x <= row_high``, ``x >= floor``, no cost
    yet (the bare binding: the Python wrapper prints a banner and adds callbacks)."""
    columns = sparse.csc_matrix(matrix)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = columns.shape[1], columns.shape[0]
    lp.col_cost_ = np.zeros(columns.shape[1])
    lp.col_lower_ = np.full(columns.shape[1], floor)
    lp.col_upper_ = np.full(columns.shape[1], highspy.kHighsInf)
    lp.row_lower_ = row_low
    lp.row_upper_ = row_high
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = columns.indptr
    lp.a_matrix_.index_ = columns.indices
    lp.a_matrix_.value_ = columns.data
    highs = _core._Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("simplex_strategy", SIMPLEX_STRATEGY)
    highs.passModel(lp)
    return highs


def run(highs: _core._Highs) -> highspy.HighsModelStatus:
    """Solve ``highs`` and return its status. A solve that ends in no verdict (``kUnknown``,
    seen after a long run of warm starts on a model that solves at once from scratch) is run
    again cold."""
    highs.run()
    if highs.getModelStatus() == highspy.HighsModelStatus.kUnknown:
        highs.clearSolver()
        highs.run()
    return highs.getModelStatus()


def implicit_equalities(
    rows: sparse.csr_matrix, row_low: np.ndarray, row_high: np.ndarray, floor: float
) -> np.ndarray:
    """Mask of the inequality rows (``row_low`` infinite) that every solution of ``row_low <=
    rows @ x <= row_high``, ``x >= floor`` meets with equality. One LP maximises the slacks of
    the rows not yet shown loose, each counted up to 1: the rows it gives some slack are loose;
    when it gives none, every row left is tight (a solution with slack in one of them, averaged
    with the optimum, would do better). Nothing is claimed if the LPs do not settle it."""
    left = np.flatnonzero(~np.isfinite(row_low))
    tight = np.zeros(len(row_low), dtype=bool)
    count = rows.shape[1]
    for _ in range(IMPLICIT_ROUNDS):
        if not len(left):
            return tight
        slack = sparse.hstack([rows[left], sparse.identity(len(left))])  # a x + t <= high
        matrix = sparse.vstack(
            [sparse.hstack([rows, sparse.csr_matrix((rows.shape[0], len(left)))]), slack]
        )
        highs = highs_model(
            matrix,
            floor,
            np.concatenate(
                [
                    np.where(np.isfinite(row_low), row_low, -highspy.kHighsInf),
                    np.full(len(left), -highspy.kHighsInf),
                ]
            ),
            np.concatenate([row_high, row_high[left]]),
        )
        extra = np.arange(count, count + len(left), dtype=np.int32)
        highs.changeColsBounds(len(left), extra, np.zeros(len(left)), np.ones(len(left)))
        highs.changeColsCost(len(left), extra, -np.ones(len(left)))
        highs.run()
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return np.zeros(len(row_low), dtype=bool)
        loose = np.asarray(highs.getSolution().col_value)[count:] > IMPLICIT_SLACK
        if not loose.any():
            tight[left] = True
            return tight
        left = left[~loose]
    return np.zeros(len(row_low), dtype=bool)


@dataclass(frozen=True)
class Merged:
    """A group's LP once its tight inequalities are equations and the cells they keep equal
    one column: its rows and their bounds (``row_*`` for propagation, ``lp_*`` for the LP),
    each old cell's column (``of_cell``) and the first old cell of each column (``first``,
    in order)."""

    rows: sparse.csr_matrix
    row_low: np.ndarray
    row_high: np.ndarray
    lp_low: np.ndarray
    lp_high: np.ndarray
    of_cell: np.ndarray
    first: np.ndarray


def merge_tight(
    rows: sparse.csr_matrix,
    row_low: np.ndarray,
    row_high: np.ndarray,
    lp_low: np.ndarray,
    lp_high: np.ndarray,
    floor: float,
) -> Merged | None:
    """Make the inequalities every solution meets with equality equations, merge the cells a
    tight ``x_a - x_b <= 0`` keeps equal, and drop the rows left empty or repeated (keeping
    the tightest bounds); None if no inequality is tight. ``row_*`` are the bounds propagation
    reads, ``lp_*`` the LP's (with numeric slack)."""
    tight = implicit_equalities(rows, row_low, row_high, floor)
    if not tight.any():
        return None
    row_low, lp_low = row_low.copy(), lp_low.copy()
    row_low[tight] = row_high[tight]
    lp_low[tight] = 2 * row_high[tight] - lp_high[tight]
    # A tight row ``x_a - x_b = 0`` (nothing published in it) merges a and b.
    pairs = rows[np.flatnonzero(tight)]
    twin = (np.diff(pairs.indptr) == 2) & (row_high[tight] == 0.0)
    twin &= np.add.reduceat(pairs.data, pairs.indptr[:-1]) == 0.0
    edges = pairs[np.flatnonzero(twin)].tocoo()
    count = rows.shape[1]
    graph = sparse.coo_matrix(
        (np.ones(len(edges.row)), (edges.col, count + edges.row)),
        shape=(count + len(edges.row), count + len(edges.row)),
    )
    _, label = connected_components(graph, directed=False)
    label = label[:count]
    # Classes numbered by their first cell, so columns keep the order of the cells.
    first = np.unique(label, return_index=True)[1]
    first.sort()
    number = np.empty(label.max() + 1, dtype=np.int64)
    number[label[first]] = np.arange(len(first))
    of_cell = number[label]
    merge = sparse.csr_matrix(
        (np.ones(count), (np.arange(count), of_cell)), shape=(count, len(first))
    )
    merged = (rows @ merge).tocsr()
    merged.eliminate_zeros()
    merged.sort_indices()  # so that identical rows read as identical below
    # Rows left empty (the merging equations themselves) hold; identical rows are one.
    keep = np.flatnonzero(np.diff(merged.indptr) > 0)
    seen: dict[tuple[bytes, bytes], int] = {}
    unique: list[int] = []
    low, high = row_low[keep], row_high[keep]
    lp_low, lp_high = lp_low[keep], lp_high[keep]
    for at, row in enumerate(keep):
        span = slice(merged.indptr[row], merged.indptr[row + 1])
        key = (merged.indices[span].tobytes(), merged.data[span].tobytes())
        if key in seen:
            other = seen[key]
            low[other], high[other] = max(low[other], low[at]), min(high[other], high[at])
            lp_low[other] = max(lp_low[other], lp_low[at])
            lp_high[other] = min(lp_high[other], lp_high[at])
        else:
            seen[key] = at
            unique.append(at)
    return Merged(
        merged[keep[unique]],
        low[unique],
        high[unique],
        lp_low[unique],
        lp_high[unique],
        of_cell,
        first,
    )

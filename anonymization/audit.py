"""The audit: what an attacker can derive about each suppressed cell from the published cells.

Published cells are tied by linear relations: a margin is the sum of the cells one level finer
along one dimension (and, across releases, a coarser cell is the sum of finer ones). Sums of a
measure always add up exactly. Distinct-subject counts add up exactly only along a dimension that
partitions the subjects (a meter lies in one commune); along another (a card pays in several
months) the margin is at least each of its cells and at most their sum. The feasible interval of
every suppressed cell is found by linear programming (HiGHS), one connected group of suppressed
cells at a time, with subjects and non-negative measures bounded below by zero.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Protocol

import highspy
import numpy as np
import pandas as pd
from highspy import _core
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from anonymization.blocks import SUBJECTS
from anonymization.errors import AuditFailure
from anonymization.hierarchies import TOP

INF = math.inf
REPORT_EVERY = 1.0  # seconds between two progress reports of a long audit
LOCAL_FROM = 300  # cells in a group from which local witnesses are tried first
LOCAL_BREADTHS = (3, 12)  # other labels per dimension in the sub-tables tried, in turn
TILE_SIZE = 400  # suppressed cells in a tile of a large group, about
TILE_TURNS = 2  # tilings tried (labels grouped differently in each)
TILE_ROUNDS = 12  # LPs per sense over a tile, at most
IMPLICIT_ROUNDS = 20  # LPs at most to find the inequalities every solution meets with equality
IMPLICIT_SLACK = 1e-6  # slack below which a row counts as met with equality (counts are integers)
# HiGHS models solving bounds side by side (HiGHS lets go of the GIL while it solves), and the
# open bounds from which a group's are shared among them (each extra model starts cold).
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
THREADS_FROM = 40
SIMPLEX_STRATEGY = 0  # HiGHS chooses: dual simplex from scratch, primal after a new objective


@dataclass(frozen=True)
class Relations:
    """Rows ``parent = sum(children)`` over cells: +1 on the parent, -1 on each child.

    ``exact`` says, per row, whether distinct subjects add up exactly along that row's split.
    """

    matrix: sparse.csr_matrix
    parents: np.ndarray
    exact: np.ndarray

    @cached_property
    def entries(self) -> sparse.coo_matrix:
        """The matrix's entries as (row, column, value) triplets, kept once built."""
        return self.matrix.tocoo()

    @property
    def size(self) -> int:
        """Number of cells the relations range over."""
        return int(self.matrix.shape[1])

    @staticmethod
    def stack(parts: list[Relations], size: int) -> Relations:
        """Relations of several sources over the same ``size`` cells, one after the other."""
        kept = [part for part in parts if part.matrix.shape[0]]
        if not kept:
            return Relations(sparse.csr_matrix((0, size)), np.zeros(0, int), np.zeros(0, bool))
        return Relations(
            sparse.vstack([p.matrix for p in kept], format="csr"),
            np.concatenate([p.parents for p in kept]),
            np.concatenate([p.exact for p in kept]),
        )

    def dominance(self) -> sparse.csr_matrix:
        """Rows ``child - parent <= 0`` for the rows where subjects do not add up exactly."""
        loose = self.matrix[np.flatnonzero(~self.exact)].tocoo()
        children = loose.data < 0
        rows = np.arange(int(children.sum()))
        child = loose.col[children]
        parent = self.parents[np.flatnonzero(~self.exact)][loose.row[children]]
        data = np.concatenate([np.ones(len(rows)), -np.ones(len(rows))])
        return sparse.csr_matrix(
            (data, (np.concatenate([rows, rows]), np.concatenate([child, parent]))),
            shape=(len(rows), self.size),
        )


def relations_within(labels: pd.DataFrame, additive: frozenset[str]) -> Relations:
    """Margin relations of one table with every grouping set published: for each cell and each
    dimension where it is ``*``, the cell is the sum of the cells with a label there."""
    size = len(labels)
    dims = list(labels.columns)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    parents: list[np.ndarray] = []
    exact: list[np.ndarray] = []
    count = 0
    for dim in dims:
        top = (labels[dim] == TOP).to_numpy()
        others = [d for d in dims if d != dim]
        group = (
            labels.groupby(others, sort=False).ngroup().to_numpy()
            if others
            else np.zeros(size, dtype=int)
        )
        parent_of_group = np.full(group.max() + 1 if size else 0, -1)
        parent_of_group[group[top]] = np.flatnonzero(top)
        child = np.flatnonzero(~top)
        parent = parent_of_group[group[child]]
        keep = parent >= 0
        child, parent = child[keep], parent[keep]
        row_of_parent = np.full(size, -1)
        used = np.unique(parent)
        row_of_parent[used] = count + np.arange(len(used))
        rows += [row_of_parent[used], row_of_parent[parent]]
        cols += [used, child]
        vals += [np.ones(len(used)), -np.ones(len(child))]
        parents.append(used)
        exact.append(np.full(len(used), dim in additive))
        count += len(used)
    matrix = sparse.csr_matrix(
        (
            np.concatenate(vals or [np.zeros(0)]),
            (
                np.concatenate(rows or [np.zeros(0, int)]),
                np.concatenate(cols or [np.zeros(0, int)]),
            ),
        ),
        shape=(count, size),
    )
    return Relations(
        matrix,
        np.concatenate(parents or [np.zeros(0, int)]),
        np.concatenate(exact or [np.zeros(0, bool)]),
    )


@dataclass(frozen=True)
class Quantity:
    """A value audited in every cell: ``subjects`` or a measure's sum (``<m>_sum``); ``error``
    bounds how far a published value may be from the one the relations hold for (a sum read
    back as mean × count)."""

    name: str
    values: np.ndarray
    nonnegative: bool
    error: np.ndarray | None = None


def components(relations: Relations, suppressed: np.ndarray) -> tuple[int, np.ndarray]:
    """Groups of suppressed cells linked by some relation (label -1 for published cells): the
    connected parts of the graph of suppressed cells and the relations they appear in."""
    entries = relations.entries
    keep = suppressed[entries.col]
    size, count = relations.size, relations.matrix.shape[0]
    graph = sparse.coo_matrix(
        (np.ones(int(keep.sum())), (entries.col[keep], size + entries.row[keep])),
        shape=(size + count, size + count),
    )
    _, labels = connected_components(graph, directed=False)
    hidden = np.flatnonzero(suppressed)
    groups, numbered = np.unique(labels[hidden], return_inverse=True)
    out = np.full(size, -1)
    out[hidden] = numbered
    return len(groups), out


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


def _model(
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


def _implicit_equalities(
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
        highs = _model(
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


class Ticker:
    """Progress of a long audit: ``label: done/total cells`` through ``progress``, at most once
    a second and at every LP in between checks. A caller's ``progress`` may raise to stop the
    work (the service does, past a job's time limit)."""

    def __init__(self, progress: Callable[[str], None] | None, label: str, total: int) -> None:
        self.progress, self.label, self.total = progress, label, total
        self.done = 0
        self.last = time.monotonic()

    def advance(self, cells: int = 1) -> None:
        """``cells`` more cells are done."""
        self.done += cells
        self.beat()

    def beat(self) -> None:
        """Report if a second has passed since the last report."""
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= REPORT_EVERY:
            self.last = now
            self.progress(f"{self.label}: {self.done}/{self.total} cells")


class _Solver:
    """One HiGHS model per group of suppressed cells, re-solved for each bound (warm start).

    It drives the bare HiGHS binding: the Python wrapper prints a banner and adds callbacks.
    """

    def __init__(
        self,
        relations: Relations,
        quantity: Quantity,
        suppressed: np.ndarray,
        cells: np.ndarray,
        ticker: Ticker | None = None,
    ) -> None:
        self.cells = cells
        self.ticker = ticker
        exact = relations.exact if quantity.name == SUBJECTS else np.ones_like(relations.exact)
        blocks = [(relations.matrix, exact)]
        if quantity.name == SUBJECTS and not exact.all():
            dominance = relations.dominance()
            blocks.append((dominance, np.zeros(dominance.shape[0], bool)))
        known = np.where(suppressed, 0.0, np.nan_to_num(quantity.values.astype(float)))
        matrices, lowers, uppers, exact_rows, rhss, errors = [], [], [], [], [], []
        for matrix, is_exact in blocks:
            touching = np.flatnonzero(np.asarray(abs(matrix[:, cells]).sum(axis=1)).ravel())
            part = matrix[touching]
            rhs = -(part @ known)
            # Published values may be off by rounding (numeric slack) or by design (``error``).
            error = np.zeros(len(touching))
            if quantity.error is not None:
                error = abs(part) @ np.where(suppressed, 0.0, quantity.error)
            # Sums are published rounded to 1e-6; subjects are exact counts.
            rounding = 0.0 if quantity.name == SUBJECTS else 1e-6
            tolerance = rounding * (np.diff(part.indptr) + 1) + 1e-9 * (1 + abs(part) @ abs(known))
            matrices.append(part[:, cells])
            uppers.append(rhs + error + tolerance)
            lowers.append(np.where(is_exact[touching], rhs - error - tolerance, -highspy.kHighsInf))
            exact_rows.append(is_exact[touching])
            rhss.append(rhs)
            errors.append(error)
        matrix = sparse.vstack(matrices, format="csc")
        rhs, error, exact = np.concatenate(rhss), np.concatenate(errors), np.concatenate(exact_rows)
        # The rows without numeric slack: what bound propagation reads (see ``outer``).
        self.rows = matrix.tocsr()
        self.row_low = np.where(exact, rhs - error, -INF)
        self.row_high = rhs + error
        self.floor = 0.0 if quantity.nonnegative else -INF
        self.lp_low = np.concatenate(lowers)
        self.lp_high = np.concatenate(uppers)
        # Position in this solver of each cell of the group (several cells share one when every
        # solution keeps them equal: see ``_merge``).
        self.group = cells
        self.of_cell = np.arange(len(cells))
        if not exact.all():
            self._merge()
        cells = self.cells
        self.highs = _model(self.rows, self.floor, self.lp_low, self.lp_high)
        self.cost = np.zeros(len(cells))
        self.positions = np.arange(len(cells), dtype=np.int32)
        self.low = np.full(len(cells), INF)
        self.high = np.full(len(cells), -INF)
        self.equations: sparse.csc_matrix | None = None
        self.by_cell: sparse.csc_matrix | None = None
        self.base = self._base(np.nan_to_num(quantity.values[cells].astype(float)))
        if self.base is not None:
            self._witness(self.positions, self.base)
        self.outer_low, self.outer_high = propagate(
            self.rows, self.row_low, self.row_high, np.full(len(cells), self.floor)
        )

    def _merge(self) -> None:
        """Find the inequalities every solution meets with equality (for distinct subjects,
        ``month <= year`` is one when the published totals leave no room: every meter counted
        in every month), make them equations, and merge the cells such an equation keeps equal
        into one column: the LPs shrink (by about the number of months) and propagation reads
        the equations."""
        tight = _implicit_equalities(self.rows, self.row_low, self.row_high, self.floor)
        if not tight.any():
            return
        self.row_low[tight] = self.row_high[tight]
        self.lp_low[tight] = 2 * self.row_high[tight] - self.lp_high[tight]
        # A tight row ``x_a - x_b = 0`` (nothing published in it) merges a and b.
        pairs = self.rows[np.flatnonzero(tight)]
        twin = (np.diff(pairs.indptr) == 2) & (self.row_high[tight] == 0.0)
        twin &= np.add.reduceat(pairs.data, pairs.indptr[:-1]) == 0.0
        edges = pairs[np.flatnonzero(twin)].tocoo()
        count = len(self.cells)
        graph = sparse.coo_matrix(
            (np.ones(len(edges.row)), (edges.col, count + edges.row)),
            shape=(count + len(edges.row), count + len(edges.row)),
        )
        _, label = connected_components(graph, directed=False)
        label = label[:count]
        # Classes numbered by their first cell, so positions keep the order of the cells.
        first = np.unique(label, return_index=True)[1]
        first.sort()
        number = np.empty(label.max() + 1, dtype=np.int64)
        number[label[first]] = np.arange(len(first))
        of_cell = number[label]
        merge = sparse.csr_matrix(
            (np.ones(count), (np.arange(count), of_cell)), shape=(count, len(first))
        )
        rows = (self.rows @ merge).tocsr()
        rows.eliminate_zeros()
        rows.sort_indices()  # so that identical rows read as identical below
        # Rows left empty (the merging equations themselves) hold; identical rows are one.
        keep = np.flatnonzero(np.diff(rows.indptr) > 0)
        seen: dict[tuple[bytes, bytes], int] = {}
        unique: list[int] = []
        low, high = self.row_low[keep], self.row_high[keep]
        lp_low, lp_high = self.lp_low[keep], self.lp_high[keep]
        for at, row in enumerate(keep):
            span = slice(rows.indptr[row], rows.indptr[row + 1])
            key = (rows.indices[span].tobytes(), rows.data[span].tobytes())
            if key in seen:
                other = seen[key]
                low[other], high[other] = max(low[other], low[at]), min(high[other], high[at])
                lp_low[other] = max(lp_low[other], lp_low[at])
                lp_high[other] = min(lp_high[other], lp_high[at])
            else:
                seen[key] = at
                unique.append(at)
        self.rows = rows[keep[unique]]
        self.row_low, self.row_high = low[unique], high[unique]
        self.lp_low, self.lp_high = lp_low[unique], lp_high[unique]
        self.of_cell = of_cell
        self.cells = self.group[first]

    def at(self, cells: np.ndarray) -> np.ndarray:
        """Positions in this solver of ``cells``, cells of the group."""
        return self.of_cell[np.searchsorted(self.group, cells)]

    def within(self, cells: np.ndarray) -> np.ndarray:
        """Positions of those of ``cells`` that are in the group, each once, in their order."""
        found = np.minimum(np.searchsorted(self.group, cells), len(self.group) - 1)
        positions = self.of_cell[found[self.group[found] == cells]]
        unique: np.ndarray = positions[np.sort(np.unique(positions, return_index=True)[1])]
        return unique

    def _base(self, values: np.ndarray) -> np.ndarray | None:
        """The cells' own values (the true table, where the caller has it) if they satisfy every
        relation: a solution that local witnesses start from; None otherwise."""
        if not np.isfinite(values).all() or (values < self.floor).any():
            return None
        level = self.rows @ values
        slack = 1e-9 * (1 + np.abs(level))
        if ((level < self.lp_low - slack) | (level > self.lp_high + slack)).any():
            return None
        return values

    def _submodel(self, members: np.ndarray) -> _core._Highs:
        """The LP of the cells at ``members`` (positions in this group) with every other cell
        at its base value: each of its solutions, completed by the base, solves the group."""
        assert self.base is not None
        if self.by_cell is None:
            self.by_cell = self.rows.tocsc()
        starts, indices = self.by_cell.indptr, self.by_cell.indices
        touched = np.unique(np.concatenate([indices[starts[c] : starts[c + 1]] for c in members]))
        part = self.rows[touched]
        inside = part[:, members]
        fixed = part @ self.base - inside @ self.base[members]
        low, high = self.lp_low[touched] - fixed, self.lp_high[touched] - fixed
        return _model(inside, self.floor, low, high)

    def _run_local(self, highs: _core._Highs, members: np.ndarray, cost: np.ndarray) -> None:
        highs.changeColsCost(len(members), np.arange(len(members), dtype=np.int32), cost)
        highs.run()
        if highs.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            self._witness(members, np.asarray(highs.getSolution().col_value))
        if self.ticker is not None:
            self.ticker.beat()

    def local(
        self, position: int, members: np.ndarray, senses: tuple[float, ...] = (1.0, -1.0)
    ) -> None:
        """Witnesses for the cell at ``position`` from one small LP over ``members`` (positions
        in this group, ``position`` first), the rest of the group at its base values."""
        if self.base is None:
            return
        highs = self._submodel(members)
        for sense in senses:
            cost = np.zeros(len(members))
            cost[0] = sense
            self._run_local(highs, members, cost)

    def tile(self, members: np.ndarray, wanted: Wanted, rounds: int = TILE_ROUNDS) -> None:
        """Witnesses for many cells of a tile (``members``, positions in this group) from LPs
        over the tile alone, the rest of the group at its base values: the sum of the cells
        still ``wanted`` minimised (then maximised), then sums of such cells sharing no
        equation (as :meth:`spread` does over the whole group), while rounds bring witnesses."""
        if self.base is None or not len(members):
            return
        highs: _core._Highs | None = None
        tried = np.zeros(len(self.cells), dtype=np.int64)
        for sense in (1.0, -1.0):
            for round_ in range(rounds):
                open_ = wanted(sense)[members]
                if not open_.any():
                    break
                chosen = members[open_]
                if round_:
                    chosen = self._apart(chosen, tried)
                tried[chosen] += 1
                if highs is None:
                    highs = self._submodel(members)
                self._run_local(highs, members, sense * np.isin(members, chosen))
                if round_ and (open_ == wanted(sense)[members]).all():
                    break

    def tiled(self, nearby: Nearby, wanted: Wanted, turns: int = TILE_TURNS) -> None:
        """Witnesses from LPs over the tiles of this group (:meth:`tile`), ``turns`` tilings."""
        if self.base is None:
            return
        for turn in range(turns):
            for tile in nearby.tiles(self.cells, TILE_SIZE, turn):
                self.tile(np.searchsorted(self.cells, tile), wanted)

    def ensure_base(self) -> None:
        """Without the true table (an audit from the files alone), a base for local witnesses:
        any solution of the group, found by one LP."""
        if self.base is not None:
            return
        self.cost[:] = 0.0
        if self._solve():
            self.base = np.maximum(np.asarray(self.highs.getSolution().col_value), self.floor)

    def unsettled(self, sense: float) -> np.ndarray:
        """Mask of the cells whose bound (sense 1: minimum, -1: maximum) a witness has not
        settled yet and might (propagation proves a finite bound)."""
        outer = self.outer_low if sense > 0 else self.outer_high
        unsettled: np.ndarray = ~self.reached(sense) & np.isfinite(outer)
        return unsettled

    def _witness(self, positions: np.ndarray, values: np.ndarray) -> None:
        """Values the cells at ``positions`` take together in one solution: widen what each
        cell is known to reach."""
        self.low[positions] = np.minimum(self.low[positions], np.maximum(values, self.floor))
        self.high[positions] = np.maximum(self.high[positions], values)

    def reached(self, sense: float, at: Any = slice(None)) -> Any:
        """Mask of the cells (at positions ``at``: all by default) whose minimum (sense 1) or
        maximum (sense -1) is settled: a witness reaches the bound that propagation proves, so
        no LP can go further."""
        outer, seen = (self.outer_low, self.low) if sense > 0 else (self.outer_high, self.high)
        outer, seen = outer[at], seen[at]
        finite = np.isfinite(outer)
        gap = sense * (seen - np.where(finite, outer, 0.0))
        return finite & (gap <= 1e-7 * (1 + np.abs(np.where(finite, outer, 0.0))))

    def bound(self, position: int, sense: float) -> float:
        """The minimum (sense 1) or maximum (sense -1) of the cell at ``position``. Every
        solution found is kept as a witness: a value a cell can take (``low``, ``high``)."""
        return self.bounds([(position, sense)], _always)[position, sense]

    def bounds(
        self,
        tasks: Sequence[tuple[int, float]],
        wanted: Callable[[int, float], bool],
        done: Callable[[int, float], None] | None = None,
        nearby: Nearby | None = None,
    ) -> dict[tuple[int, float], float]:
        """The bound of each task (position, sense) still ``wanted`` when its turn comes
        (witnesses found meanwhile may settle it): the propagated bound where a witness reaches
        it, else one LP. With ``nearby``, tasks are taken cell after cell along lines, so that
        each LP starts close to the last optimum (10M rows with totals: the sums' bounds in 83 s
        instead of 320 s). With many tasks, several HiGHS models solve side by side in threads,
        sharing the witnesses; ``done`` is told of each task handled."""
        if nearby is not None and tasks:
            along = nearby.line_order(self.cells[[position for position, _ in tasks]])
            tasks = [tasks[index] for index in along]
        results: dict[tuple[int, float], float] = {}
        lock = threading.Lock()
        pending = iter(tasks)
        failed = threading.Event()

        def work(highs: _core._Highs) -> None:
            try:
                while not failed.is_set():
                    with lock:
                        task = next(pending, None)
                        if task is None:
                            return
                        position, sense = task
                        settled = self.reached(sense, position)
                        if settled or not wanted(position, sense):
                            if settled:
                                outer = self.outer_low if sense > 0 else self.outer_high
                                results[task] = float(outer[position])
                            if done is not None:
                                done(position, sense)
                            continue
                        if self.ticker is not None:
                            self.ticker.beat()
                    cost = np.zeros(len(self.cells))
                    cost[position] = sense
                    solution = self._optimum(highs, cost)  # the GIL is free meanwhile
                    with lock:
                        if solution is None:
                            results[task] = -sense * INF
                        else:
                            self._witness(self.positions, solution)
                            results[task] = float(solution[position])
                        if done is not None:
                            done(position, sense)
            except BaseException:
                failed.set()
                raise

        threads = THREADS if len(tasks) >= THREADS_FROM else 1
        if threads == 1:
            work(self.highs)
            return results
        models = [self.highs]
        models += [
            _model(self.rows, self.floor, self.lp_low, self.lp_high) for _ in range(1, threads)
        ]
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(work, highs) for highs in models]
        for future in futures:
            future.result()
        return results

    def spread(self, positions: np.ndarray, rounds: int = 400) -> None:
        """Witnesses for many cells at once (one LP for many instead of one per cell). The sum
        of every open cell at ``positions`` (bound not yet settled) is minimised, then
        maximised; then the sum of open cells no two of which share an equation (the cells of
        one equation compete for its value, so at most one of them can reach its bound in a
        solution), for as long as such a round settles cells faster than one LP per cell."""
        for sense in (1.0, -1.0):
            tried = np.zeros(len(self.cells), dtype=np.int64)
            single = INF  # seconds per cell when solved one by one, measured below
            for round_ in range(rounds):
                open_ = positions[self.unsettled(sense)[positions]]
                if len(open_) < 4:
                    break
                if round_ == 1:
                    started = time.perf_counter()
                    for position in open_[:3]:
                        self.bound(int(position), sense)
                    single = (time.perf_counter() - started) / 3
                    continue
                chosen = open_ if round_ == 0 else self._apart(open_, tried)
                tried[chosen] += 1
                self.cost[:] = 0.0
                self.cost[chosen] = sense
                started = time.perf_counter()
                if not self._solve():
                    break
                settled = len(open_) - int((~self.reached(sense)[open_]).sum())
                if round_ and (time.perf_counter() - started) > settled * single:
                    break

    def _apart(self, open_: np.ndarray, tried: np.ndarray) -> np.ndarray:
        """Open cells no two of which share an equation, the least tried first (greedy)."""
        if self.equations is None:
            self.equations = self.rows[np.isfinite(self.row_low)].tocsc()
        starts, rows = self.equations.indptr, self.equations.indices
        used = np.zeros(self.equations.shape[0], dtype=bool)
        chosen = []
        for cell in open_[np.argsort(tried[open_], kind="stable")]:
            mine = rows[starts[cell] : starts[cell + 1]]
            if not used[mine].any():
                used[mine] = True
                chosen.append(cell)
        return np.asarray(chosen, dtype=np.int64)

    def _solve(self) -> bool:
        """Solve for the current cost; keep the solution as a witness. False if unbounded."""
        if self.ticker is not None:
            self.ticker.beat()
        solution = self._optimum(self.highs, self.cost)
        if solution is None:
            return False
        self._witness(self.positions, solution)
        return True

    def _optimum(self, highs: _core._Highs, cost: np.ndarray) -> np.ndarray | None:
        """An optimal solution of ``highs`` (this group's model) for ``cost``; None if
        unbounded."""
        highs.changeColsCost(len(self.cells), self.positions, cost)
        highs.run()
        status = highs.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return np.asarray(highs.getSolution().col_value)
        if status in (
            highspy.HighsModelStatus.kUnbounded,
            highspy.HighsModelStatus.kUnboundedOrInfeasible,
        ):
            return None
        raise AuditFailure(
            "the published cells are inconsistent: their relations have no solution",
            code="audit_inconsistent",
        )


def _related(relations: Relations) -> np.ndarray:
    """Mask of the cells that appear in at least one published relation."""
    starts: np.ndarray = relations.matrix.tocsc().indptr
    return np.asarray(np.diff(starts) > 0)


def _groups(
    relations: Relations, suppressed: np.ndarray, targets: np.ndarray, alone: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group of suppressed cells holding some target: its cells and those targets' indices.

    A cell in no relation is bounded by nothing but its sign: with ``alone`` false such groups
    are left out (nothing to prove), with ``alone`` true they are kept for the caller to fill.
    """
    _, group = components(relations, suppressed)
    members = np.flatnonzero(suppressed)
    members = members[np.argsort(group[members], kind="stable")]
    splits = np.flatnonzero(np.diff(group[members])) + 1
    wanted = pd.Series(np.arange(len(targets))).groupby(group[targets]).groups
    related = None if alone else _related(relations)
    return [
        (cells, np.asarray(wanted[group[cells[0]]]))
        for cells in np.split(members, splits)
        if len(cells)
        and group[cells[0]] in wanted
        and (related is None or len(cells) > 1 or related[cells[0]])
    ]


def intervals(
    relations: Relations,
    quantities: list[Quantity],
    suppressed: np.ndarray,
    targets: np.ndarray,
    progress: Callable[[str], None] | None = None,
    nearby: Nearby | None = None,
) -> dict[str, np.ndarray]:
    """Per quantity, a (len(targets) × 2) array of the lower and upper bound of each target
    (a suppressed cell) derivable from the published cells alone. In a large group, witnesses
    are first looked for in sub-tables (``nearby``) by small LPs."""
    out = {q.name: np.empty((len(targets), 2)) for q in quantities}
    related = _related(relations)
    ticker = Ticker(progress, "auditing", len(targets) * len(quantities))
    for cells, chosen in _groups(relations, suppressed, targets, alone=True):
        if len(cells) == 1 and not related[cells[0]]:
            # A cell in no published relation: nothing bounds it but its sign.
            for quantity in quantities:
                out[quantity.name][chosen] = (0.0 if quantity.nonnegative else -INF, INF)
            ticker.advance(len(quantities))
            continue
        for quantity in quantities:
            solver = _Solver(relations, quantity, suppressed, cells, ticker)
            at = solver.at(targets[chosen])
            if nearby is not None and len(cells) >= LOCAL_FROM:
                # Witnesses from small LPs over tiles first.
                solver.ensure_base()
                solver.tiled(nearby, solver.unsettled)
            # No LPs over sums of open cells (:meth:`_Solver.spread`) here: solved cell after
            # cell along lines, in threads, single bounds come cheaper (10M rows with totals:
            # 101 s instead of 124 s; the demo's payments with totals: 172 s instead of 197 s).
            found = solver.bounds(
                [(int(position), sense) for position in np.unique(at) for sense in (1.0, -1.0)],
                _always,
                partial(_advance, ticker, np.bincount(at, minlength=len(solver.cells))),
                nearby,
            )
            for index, position in zip(chosen, at, strict=True):
                out[quantity.name][index] = (found[position, 1.0], found[position, -1.0])
    return out


def _always(_position: int, _sense: float) -> bool:
    """Every bound is wanted (the audit lists them all)."""
    return True


def _advance(ticker: Ticker, targets: np.ndarray, position: int, sense: float) -> None:
    """Count the cells at ``position`` done once its maximum (the second bound) is."""
    if sense < 0:
        ticker.advance(int(targets[position]))


@dataclass(frozen=True)
class Requirement:
    """What each protected cell needs: a subjects interval at least ``width`` wide and, per sum,
    an interval reaching ``margin`` below and above the true value."""

    cells: np.ndarray
    width: np.ndarray
    margins: dict[str, np.ndarray]


def shortfalls(
    bounds: dict[str, np.ndarray], requirement: Requirement, truths: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per quantity, a mask of the protected cells whose interval is too narrow."""
    out: dict[str, np.ndarray] = {}
    for name, interval in bounds.items():
        lower, upper = interval[:, 0], interval[:, 1]
        if name == SUBJECTS:
            out[name] = upper - lower < requirement.width - 1e-6
            continue
        truth = np.nan_to_num(truths[name][requirement.cells].astype(float))
        margin = requirement.margins[name]
        slack = 1e-6 * (1 + np.abs(truth))
        out[name] = (lower > truth - margin + slack) | (upper < truth + margin - slack)
    return out


Wanted = Callable[[float], np.ndarray]
"""Given a sense (1: minimum, -1: maximum), the mask of a group's cells still wanting a witness
that far."""


class Nearby(Protocol):
    """Sub-tables of the release where local witnesses are looked for."""

    def __call__(self, cell: int, suppressed: np.ndarray, breadth: int) -> np.ndarray:
        """The suppressed cells of a small sub-table around ``cell`` (first), with ``breadth``
        other labels per dimension."""

    def tiles(self, cells: np.ndarray, size: int, turn: int) -> list[np.ndarray]:
        """``cells`` in tiles of about ``size``, grouped differently on each ``turn``."""

    def line_order(self, cells: np.ndarray) -> np.ndarray:
        """An order of ``cells`` in which neighbours tend to share a relation."""


def certify(
    relations: Relations,
    quantities: list[Quantity],
    suppressed: np.ndarray,
    requirement: Requirement,
    progress: Callable[[str], None] | None = None,
    nearby: Nearby | None = None,
) -> np.ndarray:
    """Mask of the protected cells whose interval is too narrow. A side is proved by a witness
    (a feasible solution found so far) when one reaches far enough: in a large group, first from
    small LPs over a sub-table around the cell (``nearby``), then from LPs over the group's open
    cells, else by the cell's own LP."""
    failing = np.zeros(len(requirement.cells), dtype=bool)
    ticker = Ticker(progress, "checking", len(requirement.cells) * len(quantities))
    for cells, chosen in _groups(relations, suppressed, requirement.cells, alone=False):
        for quantity in quantities:
            solver = _Solver(relations, quantity, suppressed, cells, ticker)
            positions = solver.at(requirement.cells[chosen])
            need = _Needs(requirement, quantity, chosen)
            if nearby is not None and solver.base is not None and len(cells) >= LOCAL_FROM:
                solver.tiled(nearby, partial(need.wanted, solver, positions))
                for row, (cell, at) in enumerate(
                    zip(requirement.cells[chosen], positions, strict=True)
                ):
                    for breadth in LOCAL_BREADTHS:
                        if not any(need.open(solver, row, int(at))):
                            break
                        members = nearby(int(cell), suppressed, breadth)
                        solver.local(int(at), solver.within(members))
            still = need.wanted(solver, positions, 1.0) | need.wanted(solver, positions, -1.0)
            solver.spread(np.unique(positions[still[positions]]))
            tasks, wanted = need.tasks(solver, positions)
            found = solver.bounds(tasks, wanted, nearby=nearby)
            for row, (index, at) in enumerate(zip(chosen, positions, strict=True)):
                ticker.advance()
                below, above = need.open(solver, row, int(at))
                # What is still open had its LP (witnesses only widen what a cell can take).
                if quantity.name == SUBJECTS:
                    if below or above:
                        high, low = found[at, -1.0], found[at, 1.0]
                        failing[index] |= high - low < need.width[row]
                    continue
                if below:
                    failing[index] |= found[at, 1.0] > need.low_target[row]
                if above:
                    failing[index] |= found[at, -1.0] < need.high_target[row]
    return failing


class _Needs:
    """What each protected cell of a group needs for one quantity, and whether the witnesses
    found so far prove it."""

    def __init__(self, requirement: Requirement, quantity: Quantity, chosen: np.ndarray) -> None:
        self.subjects = quantity.name == SUBJECTS
        self.width = requirement.width[chosen] - 1e-6
        if not self.subjects:
            truth = np.nan_to_num(quantity.values[requirement.cells[chosen]].astype(float))
            margin = requirement.margins[quantity.name][chosen]
            slack = 1e-6 * (1 + np.abs(truth))
            self.low_target = truth - margin + slack
            self.high_target = truth + margin - slack

    def _sides(self, solver: _Solver, rows: Any, at: Any) -> tuple[Any, Any]:
        """(below, above) for the protected cells ``rows`` (at group positions ``at``): whether
        their lower / upper side still lacks a witness."""
        if self.subjects:
            short = solver.high[at] - solver.low[at] < self.width[rows]
            return short, short
        return solver.low[at] > self.low_target[rows], solver.high[at] < self.high_target[rows]

    def wanted(self, solver: _Solver, positions: np.ndarray, sense: float) -> np.ndarray:
        """Mask of the group's cells (at ``positions``: the protected ones) still lacking a
        witness below (sense 1) or above (sense -1)."""
        below, above = self._sides(solver, slice(None), positions)
        mask = np.zeros(len(solver.cells), dtype=bool)
        mask[positions[below if sense > 0 else above]] = True
        return mask

    def tasks(
        self, solver: _Solver, positions: np.ndarray
    ) -> tuple[list[tuple[int, float]], Callable[[int, float], bool]]:
        """The bounds (position, sense) that the open sides of the protected cells at
        ``positions`` ask for, and whether one is still wanted when its turn comes."""
        rows: dict[int, list[int]] = {}
        tasks: dict[tuple[int, float], None] = {}
        for row, at in enumerate(positions.tolist()):
            rows.setdefault(at, []).append(row)
            below, above = self.open(solver, row, at)
            if below:
                tasks[at, 1.0] = None
            if above:
                tasks[at, -1.0] = None

        def wanted(position: int, sense: float) -> bool:
            side = 0 if sense > 0 else 1
            return any(self.open(solver, row, position)[side] for row in rows[position])

        return list(tasks), wanted

    def open(self, solver: _Solver, row: int, at: int) -> tuple[bool, bool]:
        """(below, above): whether the lower / upper side of one protected cell still lacks a
        witness."""
        below, above = self._sides(solver, row, at)
        return bool(below), bool(above)

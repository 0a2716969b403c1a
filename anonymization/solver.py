"""The LPs of one group of suppressed cells: witnesses (solutions found, values each cell can
take), bounds settled by propagation, and the LPs left, solved along lines and in threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import highspy
import numpy as np
from highspy import _core
from scipy import sparse

from anonymization.errors import AuditFailure
from anonymization.lp import INF, highs_model, merge_tight, propagate, run
from anonymization.relations import Quantity, Relations, quantity_rows, row_tolerance

REPORT_EVERY = 1.0  # seconds between two progress reports of a long audit
TILE_SIZE = 400  # suppressed cells in a tile of a large group, about
TILE_TURNS = 2  # tilings tried (labels grouped differently in each)
TILE_ROUNDS = 12  # LPs per sense over a tile, at most
# HiGHS models solving bounds side by side (HiGHS lets go of the GIL while it solves), and the
# open bounds from which a group's are shared among them (each extra model starts cold).
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
THREADS_FROM = 40
MOVED = 1e-7  # relative change from its base value from which a cell counts as moved


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


@dataclass(frozen=True)
class GroupRows:
    """The relations over some suppressed cells, every other cell at its published value: the
    rows (over those cells only), their bounds without numeric slack (what bound propagation
    reads) and with it (what the LP reads), and the cells' floor."""

    rows: sparse.csr_matrix
    exact: np.ndarray  # whether each row is an equation
    row_low: np.ndarray
    row_high: np.ndarray
    lp_low: np.ndarray
    lp_high: np.ndarray
    floor: float


def group_rows(
    relations: Relations, quantity: Quantity, suppressed: np.ndarray, cells: np.ndarray
) -> GroupRows:
    """The rows an LP over ``cells`` (suppressed cells, in order) reads for ``quantity``, the
    cells not ``suppressed`` known."""
    matrix, is_exact = quantity_rows(relations, quantity)
    known = np.where(suppressed, 0.0, np.nan_to_num(quantity.values.astype(float)))
    touching = np.flatnonzero(np.asarray(abs(matrix[:, cells]).sum(axis=1)).ravel())
    part = matrix[touching]
    rhs = -(part @ known)
    exact = is_exact[touching]
    # Published values may be off by rounding (numeric slack) or by design (``error``).
    error = np.zeros(len(touching))
    if quantity.error is not None:
        error = abs(part) @ np.where(suppressed, 0.0, quantity.error)
    tolerance = row_tolerance(part, known, quantity)
    return GroupRows(
        sparse.csr_matrix(part[:, cells]),
        exact,
        np.where(exact, rhs - error, -INF),
        rhs + error,
        np.where(exact, rhs - error - tolerance, -INF),
        rhs + error + tolerance,
        0.0 if quantity.nonnegative else -INF,
    )


class Solver:
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
        found = group_rows(relations, quantity, suppressed, cells)
        # The rows without numeric slack: what bound propagation reads (see ``outer``).
        self.rows, self.row_low, self.row_high = found.rows, found.row_low, found.row_high
        self.lp_low, self.lp_high, self.floor = found.lp_low, found.lp_high, found.floor
        # Position in this solver of each cell of the group (several cells share one when every
        # solution keeps them equal: see ``_merge``).
        self.group = cells
        self.of_cell = np.arange(len(cells))
        if not found.exact.all():
            self._merge()
        cells = self.cells
        self.highs = highs_model(self.rows, self.floor, self.lp_low, self.lp_high)
        self.cost = np.zeros(len(cells))
        self.positions = np.arange(len(cells), dtype=np.int32)
        self.low = np.full(len(cells), INF)
        self.high = np.full(len(cells), -INF)
        self.equations: sparse.csc_matrix | None = None
        self.by_cell: sparse.csc_matrix | None = None
        self.level: np.ndarray | None = None  # each row's level with every cell at its base
        self.moves: _core._Highs | None = None  # the model of nearest_in_group
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
        merged = merge_tight(
            self.rows, self.row_low, self.row_high, self.lp_low, self.lp_high, self.floor
        )
        if merged is not None:
            self.rows, self.row_low, self.row_high = merged.rows, merged.row_low, merged.row_high
            self.lp_low, self.lp_high = merged.lp_low, merged.lp_high
            self.of_cell = merged.of_cell
            self.cells = self.group[merged.first]

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
        by_cell = self._by_cell()
        starts, indices = by_cell.indptr, by_cell.indices
        touched = np.unique(np.concatenate([indices[starts[c] : starts[c + 1]] for c in members]))
        part = self.rows[touched]
        inside = part[:, members]
        fixed = part @ self.base - inside @ self.base[members]
        low, high = self.lp_low[touched] - fixed, self.lp_high[touched] - fixed
        return highs_model(inside, self.floor, low, high)

    def local_solution(
        self, members: np.ndarray, senses: tuple[float, ...]
    ) -> list[np.ndarray | None]:
        """Per sense, the values of the cells at ``members`` (positions, the cell whose bound is
        sought first) in a solution taking that cell to its minimum (1) or maximum (-1) over
        ``members`` alone, every other cell of the group at its base value (None where that LP
        has no optimum). Each is a witness too."""
        assert self.base is not None
        highs = self._submodel(members)
        found = []
        for sense in senses:
            cost = np.zeros(len(members))
            cost[0] = sense
            found.append(self._run_local(highs, members, cost))
        return found

    def nearest(
        self, members: np.ndarray, sense: float, target: float, weight: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A solution in which the cell at ``members[0]`` reaches ``target`` (at most, sense 1;
        at least, sense -1), only the cells at ``members`` (positions) leaving their base values
        and as little as can be (the LP minimises the sum of the moves, each times the cell's
        ``weight``, so few cells move): the positions that move and their values; None if no
        such solution exists."""
        assert self.base is not None
        by_cell = self._by_cell()
        level = self._level()
        # The moves up then down of the cells at ``members``, as columns over the rows they touch
        # (built from the arrays: scipy's slicing would cost more than the LP).
        starts, indices, data = by_cell.indptr, by_cell.indices, by_cell.data
        lengths = starts[members + 1] - starts[members]
        picked = np.repeat(starts[members] - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
        picked += np.arange(int(lengths.sum()))
        touched, rows = np.unique(indices[picked], return_inverse=True)
        count = len(members)
        bounds = self._move_bounds(self.base[members], 0, sense, target)
        if bounds is None:
            return None
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = 2 * count, len(touched)
        lp.col_cost_ = np.tile(weight[members], 2)
        lp.col_lower_, lp.col_upper_ = bounds
        lp.row_lower_ = self.lp_low[touched] - level[touched]
        lp.row_upper_ = self.lp_high[touched] - level[touched]
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        column_starts = np.r_[0, np.cumsum(lengths)]
        lp.a_matrix_.start_ = np.r_[column_starts, column_starts[1:] + column_starts[-1]]
        lp.a_matrix_.index_ = np.tile(rows, 2)
        lp.a_matrix_.value_ = np.r_[data[picked], -data[picked]]
        highs = _core._Highs()
        highs.setOptionValue("output_flag", False)
        highs.passModel(lp)
        return self._moved(highs, members, 0)

    def nearest_in_group(
        self, position: int, sense: float, target: float, weight: np.ndarray, fixed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """As :meth:`nearest` over every cell of the group but those ``fixed`` (at their base
        values), on one model kept from call to call (each solve starts from the last basis)."""
        assert self.base is not None
        count = len(self.cells)
        if self.moves is None:
            level = self._level()
            self.moves = highs_model(
                sparse.hstack([self.rows, -self.rows]),
                0.0,
                self.lp_low - level,
                self.lp_high - level,
            )
        bounds = self._move_bounds(self.base, position, sense, target)
        if bounds is None:
            return None
        lower, upper = bounds
        upper[np.r_[fixed, fixed]] = 0.0
        every = np.arange(2 * count, dtype=np.int32)
        self.moves.changeColsCost(2 * count, every, np.tile(weight, 2))
        self.moves.changeColsBounds(2 * count, every, lower, upper)
        return self._moved(self.moves, self.positions, position)

    def _by_cell(self) -> sparse.csc_matrix:
        """The rows by column (built once)."""
        if self.by_cell is None:
            self.by_cell = self.rows.tocsc()
        return self.by_cell

    def _level(self) -> np.ndarray:
        """Each row's level with every cell at its base value."""
        assert self.base is not None
        if self.level is None:
            self.level = self.rows @ self.base
        return self.level

    def _move_bounds(
        self, base: np.ndarray, at: int, sense: float, target: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Bounds of the moves up, then down, of cells at ``base`` values (infinite up; down to
        the floor), the one at ``at`` taken to ``target``; None if the floor forbids it."""
        count = len(base)
        lower = np.zeros(2 * count)
        upper = np.concatenate([np.full(count, INF), base - self.floor])
        # Down (sense 1) or up (-1) by at least what reaches the target, not the other way.
        going, not_going = (count + at, at) if sense > 0 else (at, count + at)
        lower[going] = max(0.0, sense * (base[at] - target))
        upper[not_going] = 0.0
        if lower[going] > upper[going]:
            return None
        return lower, upper

    def _moved(
        self, highs: _core._Highs, members: np.ndarray, at: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Solve a model of moves of the cells at ``members``: the positions that move (the one
        at index ``at`` always) and their values, kept as a witness; None if it has no optimum."""
        assert self.base is not None
        if run(highs) != highspy.HighsModelStatus.kOptimal:
            return None
        solution = np.asarray(highs.getSolution().col_value)
        count = len(members)
        base = self.base[members]
        values = base + solution[:count] - solution[count:]
        moved = np.abs(values - base) > MOVED * (1 + np.abs(base))
        moved[at] = True
        self._witness(members[moved], values[moved])
        return members[moved], values[moved]

    def _run_local(
        self, highs: _core._Highs, members: np.ndarray, cost: np.ndarray
    ) -> np.ndarray | None:
        """Solve a sub-model for ``cost``: the values of the cells at ``members`` (kept as a
        witness), None if it has no optimum."""
        highs.changeColsCost(len(members), np.arange(len(members), dtype=np.int32), cost)
        values = None
        if run(highs) == highspy.HighsModelStatus.kOptimal:
            values = np.asarray(highs.getSolution().col_value)
            self._witness(members, values)
        if self.ticker is not None:
            self.ticker.beat()
        return values

    def local(
        self, position: int, members: np.ndarray, senses: tuple[float, ...] = (1.0, -1.0)
    ) -> None:
        """Witnesses for the cell at ``position`` from one small LP over ``members`` (positions
        in this group, ``position`` first), the rest of the group at its base values."""
        if self.base is not None:
            self.local_solution(members, senses)

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
        return self.bounds([(position, sense)], always)[position, sense]

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
            highs_model(self.rows, self.floor, self.lp_low, self.lp_high) for _ in range(1, threads)
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
        return self.optimum(self.cost) is not None

    def optimum(self, cost: np.ndarray) -> np.ndarray | None:
        """An optimal solution of this group's model for ``cost`` (kept as a witness); None if
        unbounded."""
        solution = self._optimum(self.highs, cost)
        if solution is not None:
            self._witness(self.positions, solution)
        return solution

    def _optimum(self, highs: _core._Highs, cost: np.ndarray) -> np.ndarray | None:
        """An optimal solution of ``highs`` (this group's model) for ``cost``; None if
        unbounded."""
        highs.changeColsCost(len(self.cells), self.positions, cost)
        status = run(highs)
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


def always(_position: int, _sense: float) -> bool:
    """Every bound is wanted (the audit lists them all)."""
    return True

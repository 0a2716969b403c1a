"""The LPs of one group of suppressed cells: witnesses (solutions found, values each cell can
take), bounds settled by propagation, and the LPs left, solved along lines and in threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, Protocol

import highspy
import numpy as np
from highspy import _core
from scipy import sparse

from anonymization.errors import AuditFailure
from anonymization.lp import INF, highs_model, merge_tight, propagate, run
from anonymization.relations import Quantity, Relations, group_rows
from anonymization.ticker import Ticker

TILE_SIZE = 400  # suppressed cells in a tile of a large group, about
TILE_TURNS = 2  # tilings tried (labels grouped differently in each)
TILE_ROUNDS = 12  # LPs per sense over a tile, at most
# HiGHS models solving bounds side by side (HiGHS lets go of the GIL while it solves), and the
# open bounds from which a group's are shared among them (each extra model starts cold).
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
THREADS_FROM = 40


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
        self.base = self._base(np.nan_to_num(quantity.values[cells].astype(float)))
        if self.base is not None:
            self.witness(self.positions, self.base)
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
        by_cell = self.by_cell
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

    @cached_property
    def by_cell(self) -> sparse.csc_matrix:
        """The rows by column (built once, when first read)."""
        return self.rows.tocsc()

    def _run_local(
        self, highs: _core._Highs, members: np.ndarray, cost: np.ndarray
    ) -> np.ndarray | None:
        """Solve a sub-model for ``cost``: the values of the cells at ``members`` (kept as a
        witness), None if it has no optimum."""
        highs.changeColsCost(len(members), np.arange(len(members), dtype=np.int32), cost)
        values = None
        if run(highs) == highspy.HighsModelStatus.kOptimal:
            values = np.asarray(highs.getSolution().col_value)
            self.witness(members, values)
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

    def witness(self, positions: np.ndarray, values: np.ndarray) -> None:
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
                            self.witness(self.positions, solution)
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
            self.witness(self.positions, solution)
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

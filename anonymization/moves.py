"""Witnesses that move the cells of a group as little as can be: a solution in which one
suppressed cell reaches a target while the others stay as close to their true values as the
relations allow (the LPs minimise the weighted sum of the moves up and down). The greedy
method's last pass (:mod:`anonymization.pruning`) reads them to see which complements a
protected cell really needs."""

from __future__ import annotations

import highspy
import numpy as np
from highspy import _core
from scipy import sparse

from anonymization.lp import INF, highs_model, run
from anonymization.solver import Solver

MOVED = 1e-7  # relative change from its base value from which a cell counts as moved


class Moves:
    """The moves of a group's cells away from the solver's base (the true table)."""

    def __init__(self, solver: Solver) -> None:
        assert solver.base is not None
        self.solver = solver
        self.base: np.ndarray = solver.base
        self.level = solver.rows @ self.base  # each row's level with every cell at its base
        self.whole: _core._Highs | None = None  # the model of nearest_in_group, kept

    def nearest(
        self, members: np.ndarray, sense: float, target: float, weight: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A solution in which the cell at ``members[0]`` reaches ``target`` (at most, sense 1;
        at least, sense -1), only the cells at ``members`` (positions) leaving their base values
        and as little as can be (the LP minimises the sum of the moves, each times the cell's
        ``weight``, so few cells move): the positions that move and their values; None if no
        such solution exists."""
        solver = self.solver
        by_cell = solver.by_cell
        # The moves up then down of the cells at ``members``, as columns over the rows they touch
        # (built from the arrays: scipy's slicing would cost more than the LP).
        starts, indices, data = by_cell.indptr, by_cell.indices, by_cell.data
        lengths = starts[members + 1] - starts[members]
        picked = np.repeat(starts[members] - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
        picked += np.arange(int(lengths.sum()))
        touched, rows = np.unique(indices[picked], return_inverse=True)
        count = len(members)
        bounds = self._bounds(self.base[members], 0, sense, target)
        if bounds is None:
            return None
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = 2 * count, len(touched)
        lp.col_cost_ = np.tile(weight[members], 2)
        lp.col_lower_, lp.col_upper_ = bounds
        lp.row_lower_ = solver.lp_low[touched] - self.level[touched]
        lp.row_upper_ = solver.lp_high[touched] - self.level[touched]
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
        solver = self.solver
        count = len(solver.cells)
        if self.whole is None:
            self.whole = highs_model(
                sparse.hstack([solver.rows, -solver.rows]),
                0.0,
                solver.lp_low - self.level,
                solver.lp_high - self.level,
            )
        bounds = self._bounds(self.base, position, sense, target)
        if bounds is None:
            return None
        lower, upper = bounds
        upper[np.r_[fixed, fixed]] = 0.0
        every = np.arange(2 * count, dtype=np.int32)
        self.whole.changeColsCost(2 * count, every, np.tile(weight, 2))
        self.whole.changeColsBounds(2 * count, every, lower, upper)
        return self._moved(self.whole, solver.positions, position)

    def _bounds(
        self, base: np.ndarray, at: int, sense: float, target: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Bounds of the moves up, then down, of cells at ``base`` values (infinite up; down to
        the floor), the one at ``at`` taken to ``target``; None if the floor forbids it."""
        count = len(base)
        lower = np.zeros(2 * count)
        upper = np.concatenate([np.full(count, INF), base - self.solver.floor])
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
        at index ``at`` always) and their values, kept as the solver's witness; None if it has
        no optimum."""
        if run(highs) != highspy.HighsModelStatus.kOptimal:
            return None
        solution = np.asarray(highs.getSolution().col_value)
        count = len(members)
        base = self.base[members]
        values = base + solution[:count] - solution[count:]
        moved = np.abs(values - base) > MOVED * (1 + np.abs(base))
        moved[at] = True
        self.solver.witness(members[moved], values[moved])
        return members[moved], values[moved]

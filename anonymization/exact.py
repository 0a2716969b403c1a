"""Exact secondary suppression: the cheapest pattern, by Benders' decomposition (HiGHS).

An attacker bounds a suppressed cell by linear programming over the published table. A pattern
(which cells are suppressed) protects a cell when, for each side its requirement asks for (a
subjects interval k wide, a sum reaching p % below and above), the attacker's LP reaches that
far. The master problem chooses the pattern: binaries (suppress this cell or not) of least cost,
fewest cells, then fewest subjects (the greedy method's cost), under the cuts found so far. For
each side, the attacker's LP under that pattern either reaches far enough, or its optimal dual
gives a cut: a linear bound, in the binaries, on how far the LP can reach under any pattern,
which this one breaks. The cut joins the master, and the rounds go on until no side is short:
that pattern is optimal (every pattern the cuts exclude is short somewhere). A side whose last
solution stays feasible under the new pattern is not solved again.

In each attacker's LP a cell moves no further than ``SPAN`` times the move its requirement
asks of the protected cell (k for a subjects width, p % of a sum). That only restricts the
attacker, so the patterns found stay safe, and it keeps the cuts tight; on random 3-dimension
tables the optimum was the same as without it. The audit proves the result all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import highspy
import numpy as np
from highspy import _core
from scipy import sparse

from anonymization.audit import Requirement
from anonymization.blocks import SUBJECTS
from anonymization.lp import highs_model, run
from anonymization.relations import (
    Quantity,
    Relations,
    components,
    quantity_rows,
    row_tolerance,
)

# Sides (protected cells × sides) × relevant cells beyond which the method is not tried.
# Measured on random 3-dimension tables with totals (k=5, p=15): 282k-549k (463-625 cells)
# exact in 1.7-5.5 s with 22-40 complements where the greedy method took 14-29 s for 30-55;
# 0.87M-1.24M (753-968 cells): 5 of 7 exact in 9-17 s with 43-66 complements against the
# greedy method's 178-238 in 2-4 s (when its last pass skipped groups over 500 cells; it now
# tries every group: see anonymization.pruning), 2 stopped by the guards below after 10-17 s
# (then greedy); 1.65M and 3.5M stopped after 11 and 13 s.
MAX_SIZE = 1_500_000
MAX_ROUNDS = 300  # master problems solved at most
# Guards on the work, counted and not timed, so that whether a table gets the exact method does
# not depend on the machine or its load. Measured here: 10,000-25,000 simplex iterations in
# 600-1,500 LPs take 1.4-4 s (tables of 214-304 cells); tables of 750-1,560 cells reached
# these limits after 10-17 s.
MAX_ITERATIONS = 300_000  # simplex iterations over all the attackers' LPs
MAX_SOLVES = 12_000  # attackers' LPs
MAX_NODES = 20_000  # branch-and-bound nodes of one master problem
# How far an attacker's solution may move any cell, in multiples of the move its requirement
# asks of the protected cell (see the module's docstring).
SPAN = 2.0
CUT_MARGIN = 1e-6  # each normalised cut asks this much more, so the master cannot round it away


@dataclass(frozen=True)
class _Side:
    """What one protected cell needs of one quantity's LP: ``kind`` up (its maximum at least
    ``goal``), down (its minimum at most ``goal``) or width (maximum - minimum at least
    ``goal``); ``span``: how far the LP may move a cell; ``slack``: a shortfall ignored (far
    below what the audit tolerates). Values in the quantity's units."""

    quantity: int
    target: int
    kind: str
    goal: float
    span: float
    slack: float


def exact_suppression(
    relations: Relations,
    quantities: list[Quantity],
    suppressed: np.ndarray,
    requirement: Requirement,
    free: np.ndarray,
    progress: Callable[[str], None] | None = None,
) -> np.ndarray | None:
    """The cheapest mask that extends ``suppressed`` with ``free`` cells so that every
    protected cell meets ``requirement``, or None when the problem is too large or is not
    solved to optimality within its limits. ``progress`` hears of each round (and may raise
    to stop)."""
    if any(q.error is not None and not np.isfinite(q.error).all() for q in quantities):
        return None  # a quantity a held release never published: its boxes have no centre
    # The cells some chain of relations links to a protected cell (the others cannot help).
    _, linked = components(relations, np.ones(relations.size, dtype=bool))
    cells = np.flatnonzero(np.isin(linked, linked[requirement.cells]))
    sides = _sides(quantities, requirement, cells)
    if not sides:
        return suppressed.copy()
    if len(sides) * len(cells) > MAX_SIZE:
        return None
    open_ = free[cells] & ~suppressed[cells]
    work = _Work()
    attackers = [_Attacker(relations, q, cells, suppressed[cells], open_, work) for q in quantities]
    subjects = next(q.values for q in quantities if q.name == SUBJECTS)
    counts = np.nan_to_num(subjects[cells[open_]].astype(float))
    # Each cell counts 1, plus its subjects over the sum of all: fewest cells come first.
    master = _Master(1.0 + counts / (counts.sum() + 1.0))
    chosen = np.zeros(int(open_.sum()))
    proofs: dict[int, np.ndarray] = {}  # side -> open cells its last solution moves
    for round_ in range(MAX_ROUNDS):
        if progress is not None:
            progress(f"choosing complements: round {round_ + 1}, {len(master.cuts)} cuts")
        short = 0
        for index, side in enumerate(sides):
            moved = proofs.get(index)
            if moved is not None and chosen[moved].all():
                continue  # its last solution still holds under this pattern
            found = attackers[side.quantity].check(side, chosen)
            if found is None or work.iterations > MAX_ITERATIONS or work.solves > MAX_SOLVES:
                return None
            cut, proof = found
            if cut is None:
                proofs[index] = proof
            else:
                proofs.pop(index, None)
                master.add(*cut)
                short += 1
        if not short:
            mask = suppressed.copy()
            mask[cells[open_][chosen > 0.5]] = True
            return mask
        solved = master.solve()
        if solved is None:
            return None
        chosen = solved
    return None


def _sides(quantities: list[Quantity], requirement: Requirement, cells: np.ndarray) -> list[_Side]:
    """What the requirement asks of each quantity's LP, per protected cell (a side every
    pattern meets is left out)."""
    sides: list[_Side] = []
    for index, quantity in enumerate(quantities):
        for row, cell in enumerate(requirement.cells.tolist()):
            target = int(np.searchsorted(cells, cell))
            if quantity.name == SUBJECTS:
                width = float(requirement.width[row])
                if width > 0:
                    # The audit lets a width short by 1e-6 pass; ask for ten times less.
                    sides.append(_Side(index, target, "width", width, SPAN * width, 1e-7))
                continue
            truth = float(np.nan_to_num(quantity.values[cell]))
            margin = float(requirement.margins[quantity.name][row])
            if margin <= 0:
                continue
            slack = 1e-7 * (1 + abs(truth))  # the audit's slack is 1e-6 (1 + |truth|)
            sides.append(_Side(index, target, "up", truth + margin, SPAN * margin, slack))
            sides.append(_Side(index, target, "down", truth - margin, SPAN * margin, slack))
    return sides


class _Work:
    """The attackers' LPs solved so far and their simplex iterations."""

    def __init__(self) -> None:
        self.solves = 0
        self.iterations = 0


class _Attacker:
    """The attacker's LP for one quantity over the relevant cells; a cell's bounds depend on
    whether it is suppressed: its published value (within its error) if not, a box around its
    value if it is."""

    def __init__(
        self,
        relations: Relations,
        quantity: Quantity,
        cells: np.ndarray,
        hidden: np.ndarray,
        open_: np.ndarray,
        work: _Work,
    ) -> None:
        self.work = work
        values, error, self.scale, rows, tolerance, exact = _scaled(relations, quantity, cells)
        self.values, self.error = values, error
        self.nonnegative = quantity.nonnegative
        self.hidden = hidden.astype(float)
        self.open = np.flatnonzero(open_)
        low = np.where(exact, -tolerance, -np.inf)
        self.highs = highs_model(rows.tocsr(), -np.inf, low, tolerance)
        self.row_low, self.row_high = low, tolerance
        self.columns = np.arange(len(cells), dtype=np.int32)

    def check(
        self, side: _Side, chosen: np.ndarray
    ) -> tuple[tuple[np.ndarray, float] | None, np.ndarray] | None:
        """Whether the pattern (``chosen`` open cells suppressed) meets ``side``: (None, the
        open cells its solutions move) if it does, else (a cut, its rows' coefficients over
        the open cells and bound); None if the LP fails."""
        goal, slack = side.goal / self.scale, side.slack / self.scale
        if side.kind == "width":
            upper = self._optimum(side, chosen, -1.0)
            lower = self._optimum(side, chosen, 1.0)
            if upper is None or lower is None:
                return None
            reach = -upper[0] - lower[0]
            if reach >= goal - slack:
                return None, np.union1d(upper[3], lower[3])
            # -h_max(z) - h_min(z) >= goal, i.e. the constants and slopes added, <= -goal.
            return (upper[2] + lower[2], -goal - upper[1] - lower[1]), np.zeros(0, int)
        sense = -1.0 if side.kind == "up" else 1.0
        found = self._optimum(side, chosen, sense)
        if found is None:
            return None
        value, constant, slope, moved = found
        if side.kind == "up" and -value >= goal - slack:
            return None, moved
        if side.kind == "down" and value <= goal + slack:
            return None, moved
        bound = -goal if side.kind == "up" else goal
        return (slope, bound - constant), np.zeros(0, int)

    def _optimum(
        self, side: _Side, chosen: np.ndarray, sense: float
    ) -> tuple[float, float, np.ndarray, np.ndarray] | None:
        """Minimise ``sense`` × the protected cell: the optimum, and the affine function of the
        open cells' binaries that its dual gives (constant, slopes: a lower bound on the
        minimum under any pattern, equal to it under this one), and the open cells the solution
        moves."""
        values, error = self.values, self.error
        published_low, published_high = values - error, values + error
        span = side.span / self.scale
        box_low = values - span
        if self.nonnegative:  # no cell goes below 0, published within its error or not
            published_low = np.maximum(published_low, 0.0)
            box_low = np.maximum(box_low, 0.0)
        box_low = np.minimum(box_low, published_low)
        box_high = np.maximum(values + span, published_high)
        z = self.hidden.copy()
        z[self.open] = chosen
        low = published_low + z * (box_low - published_low)
        high = published_high + z * (box_high - published_high)
        count = len(values)
        self.highs.changeColsBounds(count, self.columns, low, high)
        cost = np.zeros(count)
        cost[side.target] = sense
        self.highs.changeColsCost(count, self.columns, cost)
        status = run(self.highs)
        self.work.solves += 1
        self.work.iterations += self.highs.getInfo().simplex_iteration_count
        if status != highspy.HighsModelStatus.kOptimal:
            return None
        solution = self.highs.getSolution()
        value = float(self.highs.getInfo().objective_function_value)
        row_dual = np.asarray(solution.row_dual)
        col_dual = np.asarray(solution.col_dual)
        # Weak duality: for the same duals, any bounds give at most the minimum. A positive
        # dual is held by a lower bound, a negative one by an upper bound.
        rows = np.where(row_dual > 0, row_dual * _finite(self.row_low), 0.0) + np.where(
            row_dual < 0, row_dual * _finite(self.row_high), 0.0
        )
        at_low, at_high = col_dual > 0, col_dual < 0
        base = np.where(at_low, col_dual * published_low, 0.0) + np.where(
            at_high, col_dual * published_high, 0.0
        )
        slope = np.where(at_low, col_dual * (box_low - published_low), 0.0) + np.where(
            at_high, col_dual * (box_high - published_high), 0.0
        )
        fixed = self.hidden.copy()
        fixed[self.open] = 0.0
        constant = float(rows.sum() + base.sum() + slope @ fixed)
        slopes = slope[self.open]
        if abs(constant + slopes @ chosen - value) > 1e-7 * (1 + abs(value)):
            return None  # the duals do not account for the optimum: no cut to trust
        x = np.asarray(solution.col_value)
        moved = np.abs(x - values)[self.open] > error[self.open] + 1e-9
        return value, constant, slopes, np.flatnonzero(moved)


class _Master:
    """The master problem: binaries of least cost under the cuts found so far."""

    def __init__(self, cost: np.ndarray) -> None:
        self.cost = cost
        self.cuts: list[np.ndarray] = []
        self.bounds: list[float] = []

    def add(self, slopes: np.ndarray, bound: float) -> None:
        """A cut ``slopes @ z <= bound``, scaled to coefficients of at most 1."""
        norm = max(float(np.abs(slopes).max(initial=0.0)), 1e-12)
        self.cuts.append(slopes / norm)
        self.bounds.append(bound / norm - CUT_MARGIN)

    def solve(self) -> np.ndarray | None:
        """The cheapest binaries meeting every cut, or None."""
        count = len(self.cost)
        matrix = sparse.csc_matrix(np.array(self.cuts))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = count, matrix.shape[0]
        lp.col_cost_ = self.cost
        lp.col_lower_ = np.zeros(count)
        lp.col_upper_ = np.ones(count)
        lp.row_lower_ = np.full(matrix.shape[0], -np.inf)
        lp.row_upper_ = np.array(self.bounds)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = matrix.indptr
        lp.a_matrix_.index_ = matrix.indices
        lp.a_matrix_.value_ = matrix.data
        lp.integrality_ = [highspy.HighsVarType.kInteger] * count
        highs = _core._Highs()
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("mip_rel_gap", 0.0)
        highs.setOptionValue("mip_max_nodes", MAX_NODES)
        highs.passModel(lp)
        highs.run()
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        chosen: np.ndarray = (np.asarray(highs.getSolution().col_value) > 0.5).astype(float)
        return chosen


def _finite(bounds: np.ndarray) -> np.ndarray:
    """Infinite row bounds as 0 (a dual on such a side is 0 anyway)."""
    return np.where(np.isfinite(bounds), bounds, 0.0)


def _scaled(
    relations: Relations, quantity: Quantity, cells: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, sparse.coo_matrix, np.ndarray, np.ndarray]:
    """A quantity's values, published errors, scale, relation rows (over ``cells``), the rows'
    numeric tolerance and whether each is an equation, every value divided by the scale."""
    values = np.nan_to_num(quantity.values[cells].astype(float))
    scale = max(1.0, float(np.abs(values).max(initial=0.0)))
    error = np.zeros(len(cells)) if quantity.error is None else quantity.error[cells]
    matrix, is_exact = quantity_rows(relations, quantity)
    rows = matrix[:, cells]
    keep = np.flatnonzero(np.diff(rows.indptr) > 0)
    rows, is_exact = rows[keep], is_exact[keep]
    tolerance = row_tolerance(rows, values, quantity)
    return values / scale, error / scale, scale, rows.tocoo(), tolerance / scale, is_exact

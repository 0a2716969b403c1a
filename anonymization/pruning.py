"""The greedy method's complements published again where they turn out unneeded.

Every side of every protected cell of a group (how far below and above its true value it must be
able to go, per quantity) keeps a witness: a solution of the group's relations that reaches that
far while moving the cells as little as can be from their true values (:meth:`Moves.nearest`),
found over a sub-table around the cell with every other cell at its true value, else over the
whole group. Publishing a complement fixes it at its true value, so a witness that leaves it
there stays a solution. Each complement in turn, the most subjects first, is published again if
every side whose witness moves it gets a new one without it (for the subjects, the k the
interval needs may be split anew between its two sides); otherwise it stays suppressed. As a
side gets a witness whenever one exists, this publishes what an audit of the group at each try
would; the final audit proves the result, as after any method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anonymization.audit import Requirement
from anonymization.blocks import SUBJECTS
from anonymization.lp import INF
from anonymization.moves import Moves
from anonymization.relations import Quantity, Relations
from anonymization.solver import Nearby, Solver
from anonymization.ticker import Ticker

# LPs at most for the whole pass, counted (not timed) so that the result does not depend on the
# machine: the 1M benchmark's group of 1,889 cells (1,079 protected) takes about 10,500; the
# demo payments by département, month and card country with totals (6,459 cells, 6,195
# protected) about 54,000 (50,000 for the witnesses, then 4,500 to try its 264 complements).
MAX_LPS = 120_000
# LPs a side's first witness takes, on average, from the sub-tables outwards (the demo above: 2.0),
# with room: a group whose witnesses alone would need more LPs than are left is not tried.
WITNESS_LPS = 4
BREADTHS = (1, 3, 12)  # other labels per dimension in the sub-tables tried, in turn
# Columns (cells, those kept equal merged) of a group up to which its whole LP is tried at once,
# no sub-table first (as small, and it gives the fewest moves).
WHOLE_UP_TO = 1000
EXTRA_WEIGHT = 100.0  # cost of moving a complement still to try, against 1 for any other cell

Side = tuple[int, float]  # (row among the group's protected cells, sense: 1 below, -1 above)


@dataclass(frozen=True)
class Witness:
    """A side's witness: the positions it moves, the target it reaches, and the index of the
    sub-table it was found over (len(BREADTHS): the whole group)."""

    moved: np.ndarray
    target: float
    breadth: int


Found = dict[Side, Witness]


class OutOfWork(Exception):
    """The pass has solved its ``MAX_LPS`` LPs."""


class Work:
    """LPs left to the pass (over all groups), and the ticker that reports its progress at
    least once a second (at each LP, it checks; the service's time limit acts there)."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.ticker: Ticker | None = None

    def spend(self, lps: int = 1) -> None:
        if self.left < lps:
            raise OutOfWork
        self.left -= lps
        if self.ticker is not None:
            self.ticker.beat()


class Witnesses:
    """One quantity's witnesses over one group: per side of each protected cell, the value it
    must reach and its witness (the cells, positions in the solver, it moves)."""

    def __init__(
        self,
        solver: Solver,
        quantity: Quantity,
        requirement: Requirement,
        extra: np.ndarray,
        work: Work,
        local: bool,
    ) -> None:
        self.solver = solver
        self.moves = Moves(solver)
        self.work = work
        self.protected = requirement.cells
        self.at = solver.at(requirement.cells)
        self.truth = np.nan_to_num(quantity.values[requirement.cells].astype(float))
        self.width = requirement.width if quantity.name == SUBJECTS else None
        self.margin = requirement.margins.get(quantity.name)
        # Witnesses move the complements still to try only where they must.
        self.weight = np.ones(len(solver.cells))
        self.weight[solver.at(extra)] = EXTRA_WEIGHT
        self.target: dict[Side, float] = {}  # how far each side must reach now
        self.kept: Found = {}  # each side's witness
        # Index of the first sub-table to try (len(BREADTHS): the whole group at once).
        self.first = 0 if local and len(solver.cells) > WHOLE_UP_TO else len(BREADTHS)
        self.by_position: dict[int, set[Side]] = {}
        # Positions of published cells (one can stand for several cells: Solver._merge).
        self.fixed = np.zeros(len(solver.cells), dtype=bool)

    def members(
        self, row: int, suppressed: np.ndarray, nearby: Nearby | None, index: int
    ) -> np.ndarray:
        """Positions of the suppressed cells of the ``index``-th sub-table around the protected
        cell of ``row`` (itself first) but the published ones."""
        assert nearby is not None  # sub-tables are tried only with it (``first``)
        found = self.solver.within(nearby(int(self.protected[row]), suppressed, BREADTHS[index]))
        members: np.ndarray = found[~self.fixed[found]]
        return members

    def targets(self) -> None:
        """Set how far below and above each protected cell must reach: a sum, its margin either
        side; the subjects, k in all, split between the sides as if the cell could go down to
        zero and up without limit (where a side cannot reach its share, :meth:`prove` splits k
        anew within the cell's extremes)."""
        for row in range(len(self.protected)):
            if self.width is None:
                assert self.margin is not None
                self.target[row, 1.0] = self.truth[row] - self.margin[row]
                self.target[row, -1.0] = self.truth[row] + self.margin[row]
            else:
                split = self._split(row, self.solver.floor, INF)
                self.target[row, 1.0], self.target[row, -1.0] = split

    def _reach(
        self, row: int, suppressed: np.ndarray, nearby: Nearby | None
    ) -> tuple[float, float]:
        """How low and how high the protected cell of ``row`` can go: from sub-tables outwards
        (each LP's solutions are witnesses, so what they reach is reachable), until the range
        is k wide or the whole group has given its extremes."""
        assert self.width is not None
        low = high = float(self.truth[row])
        for index in range(self.first, len(BREADTHS) + 1):
            if index < len(BREADTHS):
                members = self.members(row, suppressed, nearby, index)
                self.work.spend(2)
                found = self.solver.local_solution(members, (1.0, -1.0))
                extremes = [None if f is None else float(f[0]) for f in found]
            else:
                extremes = list(self._extremes(row))
            low = low if extremes[0] is None else min(low, extremes[0])
            high = high if extremes[1] is None else max(high, extremes[1])
            if high - low >= self.width[row]:
                break
        return low, high

    def _extremes(self, row: int) -> tuple[float, float]:
        """The minimum and maximum of the protected cell of ``row`` over the whole group, the
        published cells fixed at their values."""
        solver, at = self.solver, int(self.at[row])
        assert solver.base is not None
        fixed = np.flatnonzero(self.fixed).astype(np.int32)
        highs = solver.highs
        highs.changeColsBounds(len(fixed), fixed, solver.base[fixed], solver.base[fixed])
        try:
            extremes = []
            for sense in (1.0, -1.0):
                cost = np.zeros(len(solver.cells))
                cost[at] = sense
                self.work.spend()
                values = solver.optimum(cost)
                extremes.append(-sense * INF if values is None else float(values[at]))
        finally:
            highs.changeColsBounds(
                len(fixed), fixed, np.full(len(fixed), solver.floor), np.full(len(fixed), INF)
            )
        return extremes[0], extremes[1]

    def _split(self, row: int, low: float, high: float) -> tuple[float, float]:
        """Targets below and above the truth of ``row``, ``k`` apart within its extremes."""
        assert self.width is not None
        truth, width = self.truth[row], float(self.width[row])
        low = max(low, self.solver.floor)  # an LP's solution may lie below zero by its tolerance
        below = min(truth - low, width / 2)
        above = width - below
        if truth + above > high:
            above = high - truth
            below = width - above
        return truth - below, truth + above

    def prove(
        self, sides: set[Side], suppressed: np.ndarray, nearby: Nearby | None
    ) -> Found | None:
        """New witnesses for ``sides`` under ``suppressed``; None if a side cannot reach its
        target (nor, for the subjects, both sides a new split of k)."""
        found: Found = {}
        for row, sense in sorted(sides):
            if (row, sense) in found:
                continue
            if self.fixed[self.at[row]]:
                return None  # the protected cell itself would be published
            witness = self._witness(row, sense, self.target[row, sense], suppressed, nearby)
            if witness is not None:
                found[row, sense] = witness
                continue
            if self.width is None:
                return None
            low, high = self._reach(row, suppressed, nearby)
            if high - low < self.width[row]:
                return None
            for side, target in zip((1.0, -1.0), self._split(row, low, high), strict=True):
                witness = self._witness(row, side, target, suppressed, nearby)
                if witness is None:
                    return None
                found[row, side] = witness
        return found

    def _witness(
        self, row: int, sense: float, target: float, suppressed: np.ndarray, nearby: Nearby | None
    ) -> Witness | None:
        """A witness of one side, from the sub-table that gave the last one outwards; None if
        none reaches ``target``."""
        last = self.kept.get((row, sense))
        for index in range(self.first if last is None else last.breadth, len(BREADTHS) + 1):
            self.work.spend()
            if index < len(BREADTHS):
                members = self.members(row, suppressed, nearby, index)
                solution = self.moves.nearest(members, sense, target, self.weight)
            else:
                at = int(self.at[row])
                solution = self.moves.nearest_in_group(at, sense, target, self.weight, self.fixed)
            if solution is not None:
                return Witness(solution[0], target, index)
        return None

    def keep(self, found: Found) -> None:
        """Make ``found`` the witnesses (and targets) of their sides."""
        for side, witness in found.items():
            if side in self.kept:
                for position in self.kept[side].moved:
                    self.by_position[int(position)].discard(side)
            self.kept[side], self.target[side] = witness, witness.target
            for position in witness.moved:
                self.by_position.setdefault(int(position), set()).add(side)

    def touched(self, position: int) -> set[Side]:
        """The sides whose witness moves the cell at ``position``."""
        return set(self.by_position.get(position, ()))


def prune(
    relations: Relations,
    quantities: list[Quantity],
    cells: np.ndarray,
    extra: np.ndarray,
    requirement: Requirement,
    mask: np.ndarray,
    nearby: Nearby | None,
    work: Work,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, int]:
    """``mask`` with those of ``extra`` (complements of the group ``cells``, in the order to
    try them) published again that the group's protected cells (``requirement``) do without,
    as far as ``work`` goes: a group whose witnesses alone would need more LPs than are left is
    left as it is, and once none is left, the complements not yet tried stay suppressed. With
    it, how many complements were tried."""
    mask = mask.copy()
    every = {(row, sense) for row in range(len(requirement.cells)) for sense in (1.0, -1.0)}
    if len(every) * len(quantities) * WITNESS_LPS > work.left:
        return mask, 0
    witnesses = []
    work.ticker = Ticker(progress, "finding witnesses", len(requirement.cells) * len(quantities))
    try:
        for quantity in quantities:
            solver = Solver(relations, quantity, mask, cells)
            if solver.base is None:
                return mask, 0  # no true values to start witnesses from
            mine = Witnesses(solver, quantity, requirement, extra, work, nearby is not None)
            mine.targets()
            found = mine.prove(every, mask, nearby)
            if found is None:
                return mask, 0
            mine.keep(found)
            witnesses.append(mine)
            work.ticker.advance(len(requirement.cells))
    except OutOfWork:
        return mask, 0
    work.ticker = Ticker(progress, "trying complements again", len(extra))
    if progress is not None:
        progress(f"trying {len(extra)} complements again")
    tried = 0
    for cell in extra:
        try:
            _unneeded(witnesses, int(cell), mask, nearby)
        except OutOfWork:
            break
        tried += 1
        work.ticker.advance()
    return mask, tried


def _unneeded(
    witnesses: list[Witnesses], cell: int, mask: np.ndarray, nearby: Nearby | None
) -> None:
    """Publish ``cell`` (in ``mask``) if every side whose witness moves it gets a new one
    (otherwise, ``mask`` and the witnesses are left as they were)."""
    mask[cell] = False
    positions = [int(mine.solver.at(np.array([cell]))[0]) for mine in witnesses]
    before = [bool(mine.fixed[p]) for mine, p in zip(witnesses, positions, strict=True)]
    trials = []
    try:
        for mine, position in zip(witnesses, positions, strict=True):
            mine.fixed[position] = True
            trial = mine.prove(mine.touched(position), mask, nearby)
            if trial is None:
                break
            trials.append(trial)
    finally:
        if len(trials) < len(witnesses):
            mask[cell] = True
            for mine, position, was in zip(witnesses, positions, before, strict=True):
                mine.fixed[position] = was
    if len(trials) < len(witnesses):
        return
    for mine, trial in zip(witnesses, trials, strict=True):
        mine.keep(trial)

"""The audit: what an attacker can derive about each suppressed cell from the published cells.

The feasible interval of every suppressed cell under the published relations
(:mod:`anonymization.relations`) is found by linear programming (HiGHS), one connected group of
suppressed cells at a time (:mod:`anonymization.solver`), with subjects and non-negative
measures bounded below by zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from anonymization.blocks import SUBJECTS
from anonymization.lp import INF, propagate
from anonymization.relations import Quantity, Relations, components, group_rows
from anonymization.solver import Nearby, Solver, always
from anonymization.ticker import Ticker

LOCAL_FROM = 300  # cells in a group from which local witnesses are tried first
LOCAL_BREADTHS = (3, 12)  # other labels per dimension in the sub-tables tried, in turn


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
            solver = Solver(relations, quantity, suppressed, cells, ticker)
            at = solver.at(targets[chosen])
            if nearby is not None and len(cells) >= LOCAL_FROM:
                # Witnesses from small LPs over tiles first.
                solver.ensure_base()
                solver.tiled(nearby, solver.unsettled)
            # No LPs over sums of open cells (:meth:`Solver.spread`) here: solved cell after
            # cell along lines, in threads, single bounds come cheaper (10M rows with totals:
            # 101 s instead of 124 s; the demo's payments with totals: 172 s instead of 197 s).
            found = solver.bounds(
                [(int(position), sense) for position in np.unique(at) for sense in (1.0, -1.0)],
                always,
                partial(_advance, ticker, np.bincount(at, minlength=len(solver.cells))),
                nearby,
            )
            for index, position in zip(chosen, at, strict=True):
                out[quantity.name][index] = (found[position, 1.0], found[position, -1.0])
    return out


def outer_intervals(
    relations: Relations, quantities: list[Quantity], hidden: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """Per quantity, a (len(targets) × 2) array of bounds that every solution keeps each target
    (a ``hidden`` cell) within when the cells ``hidden`` are unknown and the others published:
    bound propagation over the LP's own rows (numeric slack included), no LP. Each LP interval
    lies inside, whatever fewer cells are suppressed (publishing a cell only adds an equation)."""
    cells = np.flatnonzero(hidden)
    at = np.searchsorted(cells, targets)
    out: dict[str, np.ndarray] = {}
    for quantity in quantities:
        rows = group_rows(relations, quantity, hidden, cells)
        floor = np.full(len(cells), rows.floor)
        lowest, highest = propagate(rows.rows, rows.lp_low, rows.lp_high, floor)
        out[quantity.name] = np.column_stack([lowest[at], highest[at]])
    return out


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
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per quantity, masks of the protected cells whose interval does not reach far enough
    (below, above); for subjects, both are the cells whose interval is too narrow."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, interval in bounds.items():
        lower, upper = interval[:, 0], interval[:, 1]
        if name == SUBJECTS:
            narrow = upper - lower < requirement.width - 1e-6
            out[name] = (narrow, narrow)
            continue
        truth = np.nan_to_num(truths[name][requirement.cells].astype(float))
        margin = requirement.margins[name]
        slack = 1e-6 * (1 + np.abs(truth))
        out[name] = (lower > truth - margin + slack, upper < truth + margin - slack)
    return out


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
            solver = Solver(relations, quantity, suppressed, cells, ticker)
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

    def _sides(self, solver: Solver, rows: Any, at: Any) -> tuple[Any, Any]:
        """(below, above) for the protected cells ``rows`` (at group positions ``at``): whether
        their lower / upper side still lacks a witness."""
        if self.subjects:
            short = solver.high[at] - solver.low[at] < self.width[rows]
            return short, short
        return solver.low[at] > self.low_target[rows], solver.high[at] < self.high_target[rows]

    def wanted(self, solver: Solver, positions: np.ndarray, sense: float) -> np.ndarray:
        """Mask of the group's cells (at ``positions``: the protected ones) still lacking a
        witness below (sense 1) or above (sense -1)."""
        below, above = self._sides(solver, slice(None), positions)
        mask = np.zeros(len(solver.cells), dtype=bool)
        mask[positions[below if sense > 0 else above]] = True
        return mask

    def tasks(
        self, solver: Solver, positions: np.ndarray
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

    def open(self, solver: Solver, row: int, at: int) -> tuple[bool, bool]:
        """(below, above): whether the lower / upper side of one protected cell still lacks a
        witness."""
        below, above = self._sides(solver, row, at)
        return bool(below), bool(above)

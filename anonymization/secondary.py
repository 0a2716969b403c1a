"""Secondary suppression: complements chosen so that no protected cell can be narrowed down.

Unless the table is large, an exact method (:mod:`anonymization.exact`): the cheapest pattern,
by Benders' decomposition. Otherwise, or when it does not reach the optimum within its limits, a
greedy method; the audit proves either. In the greedy method, every relation left with
a single suppressed cell (which it would give away by subtraction) first gets its cheapest
published cell suppressed, until no relation has exactly one. Then the LP audit runs on the
protected cells; for each one whose interval is still too narrow, each relation through it gets
one more complement (the smallest cell large enough to hide the protected one, else the
largest), and the loop repeats on the cells found short. Last, each complement is published
again if every protected cell can do without it (:mod:`anonymization.pruning`). Cost is the
cells' subject counts: few cells, small ones first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from anonymization.audit import Requirement, certify
from anonymization.blocks import SUBJECTS
from anonymization.exact import exact_suppression
from anonymization.pruning import MAX_LPS, Work, prune
from anonymization.relations import Quantity, Relations, components
from anonymization.solver import Nearby

Progress = Callable[[str], None]


def _close_singletons(
    relations: Relations, suppressed: np.ndarray, free: np.ndarray, cost: np.ndarray
) -> None:
    """Suppress, in place, the cheapest free cell of every relation with one suppressed cell
    (a relation with no free cell left is for the audit to judge)."""
    pattern = relations.matrix.copy()
    pattern.data = np.ones_like(pattern.data)
    pattern = pattern.tocsr()
    while True:
        hidden = pattern @ suppressed.astype(float)
        single = np.flatnonzero(hidden == 1)
        if not len(single):
            return
        rows = pattern[single].tocoo()
        candidate = free[rows.col] & ~suppressed[rows.col]
        if not candidate.any():
            return
        row, col = rows.row[candidate], rows.col[candidate]
        order = np.lexsort((col, cost[col], row))
        first = np.r_[True, np.diff(row[order]) != 0]
        suppressed[col[order][first]] = True


def _complements(
    relations: Relations,
    cell: int,
    suppressed: np.ndarray,
    free: np.ndarray,
    cost: np.ndarray,
    need: float,
) -> list[int]:
    """One extra complement per relation through ``cell``: the smallest free cell whose cost
    reaches ``need``, else the largest one."""
    by_column = relations.matrix.tocsc()
    chosen: list[int] = []
    for row in by_column.indices[by_column.indptr[cell] : by_column.indptr[cell + 1]]:
        members = relations.matrix.indices[
            relations.matrix.indptr[row] : relations.matrix.indptr[row + 1]
        ]
        options = members[free[members] & ~suppressed[members]]
        if not len(options):
            continue
        large = options[cost[options] >= need]
        pick = large[np.argmin(cost[large])] if len(large) else options[np.argmax(cost[options])]
        chosen.append(int(pick))
    return chosen


EXACT = "exact: Benders' decomposition (HiGHS), fewest cells then fewest subjects"
GREEDY = (
    "greedy: cheapest complement per relation until the audit passes, "
    "then those it finds unneeded published again"
)


def greedy_method(tried: int, complements: int) -> str:
    """The greedy method's description, saying how many complements its last pass tried when
    its ``MAX_LPS`` did not reach them all."""
    if tried >= complements:
        return GREEDY
    return (
        f"{GREEDY}: {tried} of {complements} complements tried, the rest past its {MAX_LPS:,} LPs"
    )


@dataclass(frozen=True)
class Complements:
    """The suppression mask with its complements, and the method that chose them."""

    mask: np.ndarray
    method: str


def secondary_suppression(
    relations: Relations,
    quantities: list[Quantity],
    suppressed: np.ndarray,
    requirement: Requirement,
    free: np.ndarray,
    progress: Progress | None = None,
    nearby: Nearby | None = None,
) -> Complements:
    """The suppression mask after adding complements until every protected cell's interval
    meets its requirement; ``free`` marks the cells that may become complements. When no free
    cell is left to add, the mask is returned as is and the final audit names the cell."""
    exact = exact_suppression(relations, quantities, suppressed, requirement, free, progress)
    if exact is not None:
        return Complements(exact, EXACT)
    cost = next(q.values for q in quantities if q.name == SUBJECTS).astype(float)
    mask = _greedy(relations, quantities, suppressed, requirement, free, cost, progress, nearby)
    return _drop_unneeded(
        relations, quantities, suppressed, requirement, mask, cost, progress, nearby
    )


def _greedy(
    relations: Relations,
    quantities: list[Quantity],
    suppressed: np.ndarray,
    requirement: Requirement,
    free: np.ndarray,
    cost: np.ndarray,
    progress: Progress | None,
    nearby: Nearby | None,
) -> np.ndarray:
    """The greedy method's mask (see the module's docstring); ``cost``: each cell's subjects."""
    report = progress or (lambda _message: None)
    mask = suppressed.copy()
    pending = np.ones(len(requirement.cells), dtype=bool)
    rounds = 0
    while True:
        _close_singletons(relations, mask, free, cost)
        if not pending.any():
            return mask
        rounds += 1
        report(f"auditing {int(pending.sum())} protected cells (round {rounds})")
        subset = _subset(requirement, pending)
        failing = certify(relations, quantities, mask, subset, progress, nearby)
        if not failing.any():
            return mask
        before = mask.copy()
        for cell, width in zip(subset.cells[failing], subset.width[failing], strict=True):
            added = _complements(relations, int(cell), mask, free, cost, float(width))
            mask[added or _widen(relations, int(cell), mask, free, cost)] = True
        if (mask == before).all():
            return mask
        # Only the cells found short are checked again: a cell once proved stays proved, as
        # complements only add suppressed cells (any solution found stays one, the new
        # complements at their published values).
        short = np.flatnonzero(pending)[failing]
        pending = np.zeros(len(requirement.cells), dtype=bool)
        pending[short] = True


def _drop_unneeded(
    relations: Relations,
    quantities: list[Quantity],
    suppressed: np.ndarray,
    requirement: Requirement,
    mask: np.ndarray,
    cost: np.ndarray,
    progress: Progress | None,
    nearby: Nearby | None,
) -> Complements:
    """``mask`` without the complements found unneeded, group by group: each in turn, the
    most subjects first, is published again if every protected cell of its group still meets
    its requirement (:func:`anonymization.pruning.prune`), within ``MAX_LPS`` LPs in all; the
    method says how many were tried."""
    _, group = components(relations, mask)
    extra = np.flatnonzero(mask & ~suppressed)
    extra = extra[np.argsort(-cost[extra], kind="stable")]
    work = Work(MAX_LPS)
    tried = 0
    for label in np.unique(group[extra]):
        cells = np.flatnonzero(mask & (group == label))
        mine = _subset(requirement, group[requirement.cells] == label)
        theirs = extra[group[extra] == label]
        mask, done = prune(relations, quantities, cells, theirs, mine, mask, nearby, work, progress)
        tried += done
    return Complements(mask, greedy_method(tried, len(extra)))


def _subset(requirement: Requirement, chosen: np.ndarray) -> Requirement:
    """The requirement of the ``chosen`` protected cells only."""
    return Requirement(
        requirement.cells[chosen],
        requirement.width[chosen],
        {name: margin[chosen] for name, margin in requirement.margins.items()},
    )


def _widen(
    relations: Relations, cell: int, suppressed: np.ndarray, free: np.ndarray, cost: np.ndarray
) -> list[int]:
    """Complements anywhere in the group of ``cell`` when its own relations have none left."""
    _, group = components(relations, suppressed)
    members = np.flatnonzero(group == group[cell])
    touching = sparse.csr_matrix(relations.matrix[:, members]).tocoo().row
    rows = relations.matrix[np.unique(touching)].tocoo()
    options = np.unique(rows.col[free[rows.col] & ~suppressed[rows.col]])
    return [int(options[np.argmin(cost[options])])] if len(options) else []

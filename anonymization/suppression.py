"""Protection beyond the primary rules: complements, then the audit that proves the release.

A :class:`Block` is one table of cells in a population context (its dimension labels, true
values, and why each cell is suppressed). The release's block is protected jointly with the
blocks a partner already holds; the audit then bounds every suppressed cell by LP and checks the
requirement of every protected one (primary and differencing cells): a subjects interval at
least k wide, and each sum's interval reaching ``p`` percent below and above the true value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from anonymization.audit import Requirement, intervals, outer_intervals, shortfalls
from anonymization.blocks import (
    PROTECTED,
    SUBJECTS,
    Audit,
    Block,
    describe_key,
    unrelated_bounds,
)
from anonymization.errors import AuditFailure
from anonymization.hierarchies import TOP
from anonymization.relations import Quantity, Relations
from anonymization.secondary import secondary_suppression

Progress = Callable[[str], None]


@dataclass(frozen=True)
class System:
    """Several blocks as one set of cells, with the relations between them."""

    blocks: list[Block]
    relations: Relations
    quantities: list[Quantity]
    offsets: np.ndarray

    @property
    def reason(self) -> np.ndarray:
        """Reasons of every cell, block after block."""
        return np.concatenate([b.reason for b in self.blocks])


def build_system(blocks: list[Block], cross: Sequence[Relations] = ()) -> System:
    """Stack ``blocks`` (the release first) with their inner and ``cross`` relations."""
    sizes = [len(b) for b in blocks]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    parts = []
    for block, offset in zip(blocks, offsets, strict=False):
        inner = block.relations()
        shifted = inner.matrix.tocoo()
        parts.append(
            Relations(_shift(shifted, int(offset), total), inner.parents + int(offset), inner.exact)
        )
    relations = Relations.stack([*parts, *cross], total)
    first = blocks[0]
    quantities = [
        Quantity(
            name,
            np.concatenate([b.values[name] for b in blocks]),
            name in first.nonnegative,
            _errors(blocks, name),
        )
        for name in first.values
    ]
    return System(blocks, relations, quantities, offsets)


def _errors(blocks: list[Block], name: str) -> np.ndarray | None:
    """Per cell, how far a published ``name`` may be from the value the relations hold for
    (None when every block publishes it exactly)."""
    if not any(name in b.errors for b in blocks):
        return None
    return np.concatenate([b.errors.get(name, np.zeros(len(b))) for b in blocks])


def _shift(coo: sparse.coo_matrix, offset: int, total: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((coo.data, (coo.row, coo.col + offset)), shape=(coo.shape[0], total))


def requirement(system: System, k: int, p: float, margins: dict[str, np.ndarray]) -> Requirement:
    """Protected cells of every block and what each needs; ``margins`` (over the release's
    cells, NaN where unset) overrides the sums' margin of differencing cells."""
    reason = system.reason
    cells = np.flatnonzero(np.isin(reason.astype(str), PROTECTED))
    out: dict[str, np.ndarray] = {}
    for quantity in system.quantities:
        if quantity.name == SUBJECTS:
            continue
        margin = p / 100.0 * np.abs(np.nan_to_num(quantity.values.astype(float)))
        if quantity.name in margins:
            override = np.full(len(margin), np.nan)
            override[: len(margins[quantity.name])] = margins[quantity.name]
            margin = np.where(np.isnan(override), margin, override)
        out[quantity.name] = margin[cells]
    return Requirement(cells, np.full(len(cells), float(k)), out)


class SubTables:
    """Sub-tables of the release around a cell, for local witnesses: along each dimension the
    cell's own label, ``*`` and up to ``breadth`` other labels whose cell (the same elsewhere)
    is suppressed; the suppressed cells of that product, the cell first."""

    def __init__(self, labels: pd.DataFrame) -> None:
        self.keys = [tuple(row) for row in labels.itertuples(index=False, name=None)]
        self.index = {key: cell for cell, key in enumerate(self.keys)}
        self.lines: dict[tuple[int, tuple[str, ...]], list[tuple[str, int]]] = {}
        for cell, key in enumerate(self.keys):
            for dim in range(len(key)):
                rest = key[:dim] + key[dim + 1 :]
                self.lines.setdefault((dim, rest), []).append((key[dim], cell))
        self.codes = [pd.factorize(labels[dim])[0] for dim in labels.columns]
        self.top = [(labels[dim] == TOP).to_numpy() for dim in labels.columns]

    def tiles(self, cells: np.ndarray, size: int, turn: int) -> list[np.ndarray]:
        """``cells`` (of the release) in tiles of about ``size`` cells: along the dimension with
        the most labels among them, runs of labels (in label order on turn 0, shuffled by
        ``turn`` after), each with the cells at ``*`` there."""
        mine = cells[cells < len(self.keys)]
        if not len(mine) or not self.codes:
            return []
        dim = self._widest(mine)
        top = self.top[dim][mine]
        shared, inner = mine[top], mine[~top]
        labels, where, counts = np.unique(
            self.codes[dim][inner], return_inverse=True, return_counts=True
        )
        order = (
            np.arange(len(labels))
            if turn == 0
            else np.random.default_rng(turn).permutation(len(labels))
        )
        before = np.cumsum(counts[order]) - counts[order]
        run = np.empty(len(labels), dtype=np.int64)
        run[order] = before // max(1, size - len(shared))
        of_cell = run[where]
        sorted_cells = inner[np.argsort(of_cell, kind="stable")]
        splits = np.flatnonzero(np.diff(np.sort(of_cell))) + 1
        return [np.concatenate([part, shared]) for part in np.split(sorted_cells, splits)]

    def _widest(self, cells: np.ndarray) -> int:
        """The dimension with the most labels among ``cells`` (cells of the release)."""
        return int(np.argmax([len(np.unique(codes[cells])) for codes in self.codes]))

    def line_order(self, cells: np.ndarray) -> np.ndarray:
        """An order of ``cells`` that keeps each line along the widest dimension together (its
        labels varying fastest); cells of held releases come last, as they are."""
        mine = np.flatnonzero(cells < len(self.keys))
        if not len(mine) or not self.codes:
            return np.arange(len(cells))
        dim = self._widest(cells[mine])
        others = [codes[cells[mine]] for d, codes in enumerate(self.codes) if d != dim]
        # np.lexsort sorts by its last key first: the widest dimension goes first, so fastest.
        inner = mine[np.lexsort([self.codes[dim][cells[mine]], *reversed(others)])]
        order: np.ndarray = np.concatenate([inner, np.flatnonzero(cells >= len(self.keys))])
        return order

    def __call__(self, cell: int, suppressed: np.ndarray, breadth: int) -> np.ndarray:
        if cell >= len(self.keys):  # a held release's cell: no sub-table of its own here
            return np.array([cell])
        key = self.keys[cell]
        choices = []
        for dim in range(len(key)):
            own = [key[dim]] if key[dim] == TOP else [key[dim], TOP]
            line = self.lines[(dim, key[:dim] + key[dim + 1 :])]
            others = [label for label, other in line if suppressed[other] and label not in own]
            choices.append(own + others[:breadth])
        found = (self.index.get(combo) for combo in itertools.product(*choices))
        members = [other for other in found if other is not None and suppressed[other]]
        members.remove(cell)
        return np.array([cell, *members])


def protect(
    system: System,
    k: int,
    p: float,
    margins: dict[str, np.ndarray] | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, Audit]:
    """Complements for the release (the first block), then the audit of every suppressed cell.
    Returns the release's reasons (``secondary`` added) and its audit; raises AuditFailure
    naming the first protected cell whose interval stays too narrow."""
    release = system.blocks[0]
    size = len(release)
    reason = system.reason.copy()
    suppressed = np.array([r is not None for r in reason], dtype=bool)
    method: str | None = None
    free = np.zeros(len(reason), dtype=bool)
    free[:size] = True
    needs = requirement(system, k, p, margins or {})
    if system.relations.matrix.shape[0] == 0:
        # Nothing published relates cells (no margins, no held release): no cell can be
        # derived from others, so each is bounded by its sign alone and needs no complement.
        targets = np.flatnonzero(suppressed)
        bounds = {q.name: unrelated_bounds(q.nonnegative, len(targets)) for q in system.quantities}
    else:
        if len(system.blocks) > 1:
            _refuse_hopeless(system, needs, suppressed | free)
        nearby = SubTables(release.labels)
        complements = secondary_suppression(
            system.relations, system.quantities, suppressed, needs, free, progress, nearby
        )
        mask, method = complements.mask, complements.method
        reason[mask & ~suppressed] = "secondary"
        if progress is not None:
            progress("auditing")
        # The release's suppressed cells (its manifest lists them) and every protected cell
        # (held ones must still hold); not the held complements nor the cells of no release.
        targets = np.union1d(np.flatnonzero(mask[:size]), needs.cells)
        bounds = intervals(system.relations, system.quantities, mask, targets, progress, nearby)
    _check(system, needs, targets, bounds)
    mine = targets < size
    audit = Audit(
        release.labels.iloc[targets[mine]].reset_index(drop=True),
        [str(r) for r in reason[targets[mine]]],
        {name: bound[mine] for name, bound in bounds.items()},
        k,
        p,
        sorted(release.additive),
        sorted(release.nonnegative),
        errors=release.published_errors(),
        complements=method,
    )
    return reason[:size], audit


def _refuse_hopeless(system: System, needs: Requirement, hidden: np.ndarray) -> None:
    """Refuse at once (AuditFailure naming the cell) a release whose protected cell no choice of
    complements can protect: even with every cell of the release suppressed (``hidden``), what
    the partner holds keeps the cell's outer interval (:func:`outer_intervals`) too narrow. The
    search for complements would otherwise run to its end before the audit refused it (minutes
    on a few thousand cells)."""
    bounds = outer_intervals(system.relations, system.quantities, hidden, needs.cells)
    _check(system, needs, needs.cells, bounds, "whatever else is suppressed, ")


def _check(
    system: System,
    needs: Requirement,
    targets: np.ndarray,
    bounds: dict[str, np.ndarray],
    hopeless: str = "",
) -> None:
    at = np.searchsorted(targets, needs.cells)
    protected = {name: bound[at] for name, bound in bounds.items()}
    truths = {q.name: q.values for q in system.quantities}
    for name, (below, above) in shortfalls(protected, needs, truths).items():
        if (below | above).any():
            row = int(np.flatnonzero(below | above)[0])
            cell = int(needs.cells[row])
            block = int(np.searchsorted(system.offsets, cell, side="right") - 1)
            labels = system.blocks[block].labels
            lower, upper = protected[name][row] + 0.0  # no "-0"
            if name == SUBJECTS:
                why = f"narrower than k = {needs.width[row]:g}"
            else:
                side = "below" if below[row] else "above"
                why = f"not reaching {needs.margins[name][row]:g} {side} its value"
            with_held = " with the releases the partner holds" if len(system.blocks) > 1 else ""
            raise AuditFailure(
                f"suppressed cell ({describe_key(labels, cell - int(system.offsets[block]))}) "
                f"can be narrowed to {name} in [{lower:g}, {upper:g}]{with_held}, "
                f"{hopeless}{why}",
                code="audit_failed",
            )

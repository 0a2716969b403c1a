"""Protection beyond the primary rules: complements, then the audit that proves the release.

A :class:`Block` is one table of cells in a population context (its dimension labels, true
values, and why each cell is suppressed). The release's block is protected jointly with the
blocks a partner already holds; the audit then bounds every suppressed cell by LP and checks the
requirement of every protected one (primary and differencing cells): a subjects interval at
least k wide, and each sum's interval reaching ``p`` percent below and above the true value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from anonymization.audit import (
    SUBJECTS,
    Quantity,
    Relations,
    Requirement,
    intervals,
    relations_within,
    shortfalls,
)
from anonymization.errors import AuditFailure
from anonymization.hierarchies import TOP
from anonymization.plan import AggregatePlan
from anonymization.secondary import secondary_suppression

PRIMARY = ("k", "dominance", "p_percent")
PROTECTED = (*PRIMARY, "differencing")
Progress = Callable[[str], None]


def audited_sums(measures: Sequence[str]) -> list[str]:
    """Measure columns whose sum a table gives away: published as ``_sum``, or as both
    ``_mean`` and ``_count`` (their product)."""
    names = set(measures)
    columns = dict.fromkeys(
        name.rsplit("_", 1)[0] for name in measures if name != SUBJECTS and "_" in name
    )
    return [
        column
        for column in columns
        if f"{column}_sum" in names or {f"{column}_mean", f"{column}_count"} <= names
    ]


@dataclass(frozen=True)
class Block:
    """One table of cells: labels (``*`` on margins), values per quantity, reasons, and per
    quantity how far each published value may be from the true one (``errors``: the noise)."""

    labels: pd.DataFrame
    values: dict[str, np.ndarray]
    reason: np.ndarray
    totals: bool
    additive: frozenset[str]
    nonnegative: frozenset[str]
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def relations(self) -> Relations:
        """The margin relations inside this table (none without totals)."""
        if not self.totals or self.labels.shape[1] == 0:
            return Relations.stack([], len(self))
        return relations_within(self.labels, self.additive)


def additive_dimensions(labels: pd.DataFrame, subjects: np.ndarray) -> frozenset[str]:
    """Dimensions along which distinct subjects add up (each subject has one label), read off
    the one-dimension margins and the grand total of a table with totals."""
    top = labels == TOP
    grand = top.all(axis=1).to_numpy()
    if not grand.any():
        return frozenset()
    total = subjects[grand][0]
    found = set()
    for dim in labels.columns:
        alone = (~top[dim] & top.drop(columns=dim).all(axis=1)).to_numpy()
        if subjects[alone].sum() == total:
            found.add(dim)
    return frozenset(found)


def engine_block(
    cells: pd.DataFrame,
    plan: AggregatePlan,
    reason: pd.Series,
    published_subjects: np.ndarray | None = None,
    noise: float = 0.0,
) -> Block:
    """The block of a release computed by the engine: true values, published rounding; with
    noise, the published (perturbed) ``subjects``, each within ``noise`` of the true count."""
    dims = [d.column for d in plan.dimensions]
    labels = cells[dims].astype(str).reset_index(drop=True)
    subjects = cells["subjects"].to_numpy(dtype=float)
    values = {SUBJECTS: subjects if published_subjects is None else published_subjects * 1.0}
    errors = {SUBJECTS: np.full(len(cells), noise)} if published_subjects is not None else {}
    nonnegative = {SUBJECTS}
    for column in audited_sums([m.name for m in plan.measures]):
        sums = np.round(np.nan_to_num(cells[f"{column}_sum"].to_numpy(dtype=float)), 6)
        values[f"{column}_sum"] = sums
        if (sums >= 0).all():
            nonnegative.add(f"{column}_sum")
    additive = (
        additive_dimensions(labels, subjects)
        if plan.totals
        else frozenset(cells.attrs.get("additive", ()))
    )
    return Block(
        labels,
        values,
        reason.to_numpy(dtype=object),
        plan.totals,
        additive,
        frozenset(nonnegative),
        errors,
    )


def describe_key(labels: pd.DataFrame, row: int) -> str:
    """A cell's key as ``dim=label, ...``."""
    return ", ".join(f"{dim}={labels.iloc[row][dim]}" for dim in labels.columns) or "(total)"


@dataclass(frozen=True)
class Audit:
    """The interval of every suppressed cell of a release, and the requirement it was held to."""

    keys: pd.DataFrame
    reasons: list[str]
    bounds: dict[str, np.ndarray]
    k: int
    p: float
    additive: list[str]
    nonnegative: list[str]
    errors: dict[str, float] = field(default_factory=dict)

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``audit`` block (an unbounded side is ``null``)."""
        cells = []
        keys = self.keys.astype(str).to_dict(orient="records")
        for row, key in enumerate(keys):
            entry: dict[str, Any] = {"key": key, "reason": self.reasons[row]}
            for name, bound in self.bounds.items():
                entry[name] = {"lower": _finite(bound[row, 0]), "upper": _finite(bound[row, 1])}
            cells.append(entry)
        return {
            "method": "linear programming (HiGHS) over the published cells' relations",
            "requirement": {"subjects_width": self.k, "sum_percent": self.p},
            "additive_dimensions": self.additive,
            "nonnegative": self.nonnegative,
            **({"published_error": self.errors} if self.errors else {}),
            "passed": True,
            "cells": cells,
        }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(float(value), 6)


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
    suppressed = np.array([r is not None for r in reason])
    free = np.zeros(len(reason), dtype=bool)
    free[:size] = True
    needs = requirement(system, k, p, margins or {})
    if system.relations.matrix.shape[0] == 0:
        # Nothing published relates cells (no margins, no held release): no cell can be
        # derived from others, so each is bounded by its sign alone and needs no complement.
        targets = np.flatnonzero(suppressed)
        bounds = {q.name: _unrelated(q.nonnegative, len(targets)) for q in system.quantities}
    else:
        mask = secondary_suppression(
            system.relations, system.quantities, suppressed, needs, free, progress
        )
        reason[mask & ~suppressed] = "secondary"
        if progress is not None:
            progress("auditing")
        targets = np.flatnonzero(mask)
        bounds = intervals(system.relations, system.quantities, mask, targets)
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
        {name: float(error.max()) for name, error in release.errors.items() if len(error)},
    )
    return reason[:size], audit


def _unrelated(nonnegative: bool, count: int) -> np.ndarray:
    """Bounds of cells in no relation: [0 or -inf, +inf)."""
    return np.column_stack(
        [np.full(count, 0.0 if nonnegative else -math.inf), np.full(count, math.inf)]
    )


def _check(
    system: System, needs: Requirement, targets: np.ndarray, bounds: dict[str, np.ndarray]
) -> None:
    at = np.searchsorted(targets, needs.cells)
    protected = {name: bound[at] for name, bound in bounds.items()}
    truths = {q.name: q.values for q in system.quantities}
    for name, short in shortfalls(protected, needs, truths).items():
        if short.any():
            cell = int(needs.cells[np.flatnonzero(short)[0]])
            block = int(np.searchsorted(system.offsets, cell, side="right") - 1)
            labels = system.blocks[block].labels
            lower, upper = protected[name][np.flatnonzero(short)[0]]
            raise AuditFailure(
                f"suppressed cell ({describe_key(labels, cell - int(system.offsets[block]))}) "
                f"can be narrowed to {name} in [{lower:g}, {upper:g}]",
                code="audit_failed",
            )

"""A table of cells as the protection sees it (a :class:`Block`), and the :class:`Audit` of a
release: the interval of every suppressed cell.

Kept apart from the LP machinery (SciPy, HiGHS) so that a release publishing no relation
between its cells (no margins, no held release) loads none of it: each of its suppressed cells
is bounded by its sign alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from anonymization.hierarchies import TOP
from anonymization.plan import AggregatePlan

if TYPE_CHECKING:
    from anonymization.relations import Relations

SUBJECTS = "subjects"


PRIMARY = ("k", "dominance", "p_percent")
PROTECTED = (*PRIMARY, "differencing")


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

    def published_errors(self) -> dict[str, float]:
        """Per perturbed quantity, the largest distance of a published value from the truth."""
        return {name: float(error.max()) for name, error in self.errors.items() if len(error)}

    def relations(self) -> Relations:
        """The margin relations inside this table (none without totals)."""
        from anonymization.relations import Relations, relations_within

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


def table_counts(table: pd.DataFrame) -> dict[str, Any]:
    """What a manifest states of its table (``status`` and ``reason`` columns): cells released
    and suppressed, suppressed by reason, and complements (reason ``secondary``)."""
    status = table["status"].astype(str)
    hidden = status == "suppressed"
    reasons = table.loc[hidden, "reason"].astype(str).value_counts()
    return {
        "cells": len(table),
        "released": int((status == "released").sum()),
        "suppressed": int(hidden.sum()),
        "suppressed_by_reason": {str(k): int(v) for k, v in sorted(reasons.items())},
        "complements": int(reasons.get("secondary", 0)),
    }


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
    method: str = "linear programming (HiGHS) over the published cells' relations"
    errors: dict[str, float] = field(default_factory=dict)
    complements: str | None = None  # how the complements were chosen (None: none looked for)
    held: int = 0  # releases the partner held over the same population, in the LP with this one

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``audit`` block (an unbounded side is ``null``)."""
        columns = list(self.keys.columns)
        labels = zip(*(self.keys[c].astype(str).tolist() for c in columns), strict=True)
        keys = [dict(zip(columns, row, strict=True)) for row in labels]
        if not columns:  # a table without dimensions: its one cell is the grand total
            keys = [{} for _ in self.reasons]
        cells: list[dict[str, Any]] = [
            {"key": key, "reason": reason} for key, reason in zip(keys, self.reasons, strict=True)
        ]
        for name, bound in self.bounds.items():
            sides = zip(_finite(bound[:, 0]), _finite(bound[:, 1]), strict=True)
            for entry, (lower, upper) in zip(cells, sides, strict=True):
                entry[name] = {"lower": lower, "upper": upper}
        return {
            "method": self.method,
            "requirement": {"subjects_width": self.k, "sum_percent": self.p},
            "additive_dimensions": self.additive,
            "nonnegative": self.nonnegative,
            **({"published_error": self.errors} if self.errors else {}),
            **({"held_releases": self.held} if self.held else {}),
            "passed": True,
            "cells": cells,
        }


def _finite(values: np.ndarray) -> list[float | None]:
    if np.isinf(values).all():  # a side no relation bounds (every cell of a table alone)
        return [None] * len(values)
    return [None if math.isinf(v) else round(v, 6) for v in values.tolist()]


def unrelated_bounds(nonnegative: bool, count: int) -> np.ndarray:
    """Bounds of cells in no relation: [0 or -inf, +inf)."""
    return np.column_stack(
        [np.full(count, 0.0 if nonnegative else -math.inf), np.full(count, math.inf)]
    )


def audit_alone(block: Block, k: int, p: float) -> Audit:
    """The audit of a release whose cells no published relation ties together: nothing can be
    derived of a suppressed cell, so each is bounded by its sign alone, [0, +inf) for counts
    and non-negative sums. Such bounds meet every requirement (width k, p % on each side)."""
    targets = np.flatnonzero([r is not None for r in block.reason])
    return Audit(
        block.labels.iloc[targets].reset_index(drop=True),
        [str(r) for r in block.reason[targets]],
        {name: unrelated_bounds(name in block.nonnegative, len(targets)) for name in block.values},
        k,
        p,
        sorted(block.additive),
        sorted(block.nonnegative),
        method="none needed: no published relation ties the cells (no margins, no held release)",
        errors=block.published_errors(),
    )

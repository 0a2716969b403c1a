"""The audit from the published files alone: what a data protection officer can check without
the source data.

The table's structure is re-derived from the manifest's plan (dimension columns, measures,
totals); every suppressed cell's interval is recomputed by LP on the published cells only and
compared with the manifest's. The true values are unknown here, so the sums' requirement is
checked in its only verifiable form: some value inside the interval is at least ``p`` percent
away from both ends.

Neither file is trusted: the manifest's fields are checked (:mod:`anonymization.manifest`), and
so are the table's statuses, numbers and keys (:mod:`anonymization.published`); a suppressed cell
that shows a value, or whose reason is not the manifest's, fails the audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from anonymization.audit import intervals
from anonymization.blocks import PROTECTED, SUBJECTS, describe_key, table_counts
from anonymization.errors import AuditFailure, InvalidRequest
from anonymization.hierarchies import Hierarchy
from anonymization.joint import Joint, joint_published
from anonymization.manifest import Manifest, ManifestBounds, ManifestCell, read_manifest
from anonymization.published import published_block
from anonymization.suppression import SubTables, System

TOLERANCE = 1e-4


@dataclass(frozen=True)
class ReauditResult:
    """What the re-audit checked."""

    cells: int
    suppressed: int
    protected: int
    subjects: bool  # whether the table publishes subjects (else only its sums are audited)
    held: int  # releases the manifest says were held with it (in the engine's LP)
    joined: int  # held releases whose files joined this audit's LP
    other_populations: int  # held files of other filters (not in the LP)
    exact: bool  # whether the intervals were found equal to the manifest's (else: containing)
    cover: bool  # whether a cover table of every label combination joined the LP


def reaudit(
    table: pd.DataFrame,
    manifest: Manifest | dict[str, Any],
    progress: Callable[[str], None] | None = None,
    held: Sequence[tuple[pd.DataFrame, Manifest]] = (),
    hierarchies: dict[str, Hierarchy] | None = None,
) -> ReauditResult:
    """Recompute every suppressed cell's interval from ``table`` and check it against the
    manifest and the requirement; raise AuditFailure naming the first cell that fails.
    ``progress`` hears how far a long audit is.

    ``held``: the files of releases the partner held when this one was made. Those of the same
    data and population join the LP as the engine's did (:func:`joint_published`), so the
    intervals are the ones the partner can derive from every file together, and each cell they
    suppressed must be suppressed here too. Releases grouping a dimension at different levels
    are tied through ``hierarchies`` (the policy's)."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    dims = manifest.dims
    block = published_block(table, manifest)
    joint = joint_published(block, manifest, held, hierarchies or {})
    system = joint.system
    hidden = np.flatnonzero((table["status"].astype(str) == "suppressed").to_numpy())
    nearby = SubTables(block.labels)
    # The held releases' protected cells too: with this release, each must still hold.
    theirs = np.flatnonzero(np.isin(system.reason.astype(str), PROTECTED))
    theirs = theirs[(theirs >= len(table)) & (theirs < system.offsets[1 + joint.joined])]
    targets = np.concatenate([hidden, theirs])
    bounds = intervals(
        system.relations, system.quantities, joint.suppressed, targets, progress, nearby
    )
    _held_protected(system, joint, theirs, {n: b[len(hidden) :] for n, b in bounds.items()})
    stated = _stated(manifest, dims)
    protection = manifest.plan.protection
    # Intervals equal the manifest's when the LP reads what the engine's read: the same held
    # releases and no cover table (the engine's has only the cells with data).
    exact = joint.joined == manifest.audit.held_releases and not joint.cover
    protected = 0
    for position, row in enumerate(hidden):
        where = describe_key(block.labels, int(row))
        entry = stated.pop(tuple(block.labels.iloc[row]), None)
        if entry is None:
            raise AuditFailure(f"suppressed cell ({where}) is not in the manifest's audit")
        if entry.reason is not None and entry.reason != block.reason[row]:
            raise AuditFailure(
                f"suppressed cell ({where}): the table gives the reason {block.reason[row]!r}, "
                f"the manifest {entry.reason!r}"
            )
        for name, bound in bounds.items():
            low, high = bound[position]
            claimed = (entry.__pydantic_extra__ or {}).get(name)
            if exact:
                _same(claimed, low, high, name, where, joint.joined)
            else:
                # The manifest's interval came from an LP that also read held releases not
                # given here (or a cover table of only the cells with data): these files can
                # only confirm it is no wider than what they give.
                _within(claimed, low, high, name, where)
                low, high = _bounds(claimed)
            if block.reason[row] in PROTECTED:
                _requirement(name, low, high, protection.k, protection.interval.p, where)
        protected += block.reason[row] in PROTECTED
    if stated:
        where = ", ".join(f"{d}={v}" for d, v in zip(dims, next(iter(stated)), strict=True))
        raise AuditFailure(
            f"the manifest's audit lists a cell ({where}) the table does not suppress"
        )
    described(table, manifest)
    for index, (its_table, its) in enumerate(held):
        try:
            described(its_table, its)
        except AuditFailure as failure:
            raise AuditFailure(
                f"held release {index + 1}: {failure.detail}", field=f"held.{index}.{failure.field}"
            ) from None
    return ReauditResult(
        len(table),
        len(hidden),
        protected,
        SUBJECTS in manifest.plan.measures,
        manifest.audit.held_releases,
        joint.joined,
        joint.other_populations,
        exact,
        joint.cover,
    )


def described(table: pd.DataFrame, manifest: Manifest) -> None:
    """Raise AuditFailure where the manifest says of ``table`` what it does not hold: its
    counts of cells (``cells``, ``released``, ``suppressed``, by reason, ``complements``), the
    requirement its audit states against the plan's, or an audit that did not pass. A reader
    takes these figures from the manifest; the table is what they must describe."""
    for name, value in table_counts(table).items():
        claimed = getattr(manifest, name)
        if claimed != value:
            raise AuditFailure(
                f"the manifest says {name}: {claimed}, the table has {value}",
                field=f"manifest.{name}",
            )
    protection, stated = manifest.plan.protection, manifest.audit.requirement
    if stated is not None and (stated.subjects_width, stated.sum_percent) != (
        protection.k,
        protection.interval.p,
    ):
        raise AuditFailure(
            f"the manifest's audit states the requirement subjects_width {stated.subjects_width}"
            f", sum_percent {stated.sum_percent:g}; its plan's protection is k {protection.k}, "
            f"p {protection.interval.p:g}",
            field="manifest.audit.requirement",
        )
    if not manifest.audit.passed:
        raise AuditFailure(
            "the manifest's audit says it did not pass", field="manifest.audit.passed"
        )


def _held_protected(
    system: System, joint: Joint, cells: np.ndarray, bounds: dict[str, np.ndarray]
) -> None:
    """Raise AuditFailure if a protected cell of a held release (``cells``, with their
    ``bounds`` given everything) no longer holds its interval."""
    for position, cell in enumerate(cells):
        number = int(np.searchsorted(system.offsets, cell, side="right")) - 1
        block = system.blocks[number]
        where = describe_key(block.labels, int(cell - system.offsets[number]))
        for name, bound in bounds.items():
            low, high = bound[position]
            protection = joint.protections[number - 1]
            try:
                _requirement(name, low, high, protection.k, protection.interval.p, where)
            except AuditFailure as failure:
                raise AuditFailure(
                    f"with this release, held release {number}'s {failure.detail}"
                ) from None


def _stated(manifest: Manifest, dims: list[str]) -> dict[tuple[str, ...], ManifestCell]:
    """The manifest's audited cells by key (their labels in the order of ``dims``)."""
    out: dict[tuple[str, ...], ManifestCell] = {}
    for index, cell in enumerate(manifest.audit.cells):
        field = f"manifest.audit.cells.{index}.key"
        if set(cell.key) != set(dims):
            raise InvalidRequest(f"must name exactly the dimensions {dims}", field=field)
        key = tuple(cell.key[d] for d in dims)
        if key in out:
            raise InvalidRequest("lists a cell already listed", field=field)
        out[key] = cell
    return out


def _same(
    stated: ManifestBounds | None, low: float, high: float, name: str, where: str, held: int
) -> None:
    """The manifest's interval is [low, high] (up to rounding); ``held`` files joined the LP."""

    def close(value: float | None, found: float) -> bool:
        if value is None:
            return bool(np.isinf(found))
        return bool(abs(found - value) <= TOLERANCE * (1 + abs(value)))

    if stated is None or not (close(stated.lower, low) and close(stated.upper, high)):
        given = (
            f" (with the {held} held release(s) given: the ones the partner held then?)"
            if held
            else ""
        )
        raise AuditFailure(
            f"cell ({where}): the manifest states {name} in {_show(stated)}, "
            f"the published cells give [{low + 0.0:g}, {high:g}]{given}"
        )


def _bounds(stated: ManifestBounds | None) -> tuple[float, float]:
    """A stated interval as floats (``null`` sides infinite)."""
    assert stated is not None
    low = -np.inf if stated.lower is None else stated.lower
    return low, np.inf if stated.upper is None else stated.upper


def _within(stated: ManifestBounds | None, low: float, high: float, name: str, where: str) -> None:
    """The manifest's interval lies within [low, high] (up to rounding)."""
    if stated is not None:
        inner_low, inner_high = _bounds(stated)
        slack = TOLERANCE * (1 + np.abs([inner_low, inner_high]))
        if inner_low >= low - slack[0] and inner_high <= high + slack[1]:
            return
    raise AuditFailure(
        f"cell ({where}): the manifest states {name} in {_show(stated)}, wider than "
        f"[{low + 0.0:g}, {high:g}] that the published cells give"
    )


def _show(stated: ManifestBounds | None) -> str:
    return "nothing" if stated is None else f"[{stated.lower}, {stated.upper}]"


def _requirement(name: str, low: float, high: float, k: int, p: float, where: str) -> None:
    if name == SUBJECTS:
        if high - low < k - 1e-6:
            raise AuditFailure(
                f"suppressed cell ({where}) can be narrowed to {name} in [{low:g}, {high:g}], "
                f"narrower than k = {k}"
            )
        return
    share = p / 100.0
    positive = max(0.0, low / (1 - share)) <= high / (1 + share) + 1e-6
    negative = low / (1 + share) <= min(0.0, high / (1 - share)) + 1e-6
    if not (positive or negative):
        raise AuditFailure(
            f"suppressed cell ({where}) can be narrowed to {name} in [{low:g}, {high:g}], "
            f"closer than {p:g}% to any value"
        )

"""Protecting a release jointly with what the partner already holds (the ledger).

Held releases over the same population (same dataset, same filters) join the release's LP: a
held cell is tied to the release's cells by ``coarser cell = sum of the finer cells mapping to
it`` (through the dimensions' hierarchies, e.g. a département and its communes), so secondary
suppression and the audit see every margin the partner can form. Two tables of one population
also meet where neither publishes a cell: a table by commune and one by tariff, both without
totals, add up to the same grand total, so one's suppressed cell is the other's sum minus its
own published cells. Each such common margin (over the dimensions both tables have, at the
coarser of their levels) joins the LP as cells of no release, unknown to the partner. Three
tables by (a, b), (b, c) and (a, c) also meet through cells none of them lists; with three
blocks or more, the table they all add up from (the cover table of linked tables, with only the
cells that have data: more than a partner knows, so the LP is stricter than any attacker's)
joins the LP too. A cell suppressed before stays suppressed at the same key.

Held releases over another population of the same dataset (other filters) cannot be tied by
exact relations; for them the engine, which has the data, counts per cell the subjects that the
two populations do not share at the same key. A difference of 1 to k-1 subjects would isolate a
small group by subtraction: the new cell is suppressed with reason ``differencing``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import sparse

from anonymization.blocks import Block, engine_block
from anonymization.cells import compute_cells, differing_subjects
from anonymization.hierarchies import TOP, Hierarchy
from anonymization.ledger import HeldRelease
from anonymization.plan import AggregatePlan, Dimension
from anonymization.relations import Relations
from anonymization.source import Source
from anonymization.suppression import System, build_system

UNPUBLISHED = "unpublished"  # the reason of a common margin's cells: no release shows them


def context_of(plan: AggregatePlan) -> str:
    """The population a plan counts: its filters, as canonical JSON."""
    return json.dumps(plan.describe()["filters"], sort_keys=True)


@dataclass(frozen=True)
class Placed:
    """A block with the levels of its dimensions and where its cells start in the system."""

    block: Block
    levels: dict[str, str]
    offset: int


def _keys(labels: pd.DataFrame, levels: dict[str, str]) -> list[tuple[tuple[str, str, str], ...]]:
    """Each cell's key: its non-``*`` (column, level, label) triples."""
    columns = list(labels.columns)
    return [
        tuple((c, levels[c], label) for c, label in zip(columns, row, strict=True) if label != TOP)
        for row in labels.itertuples(index=False, name=None)
    ]


def cross_relations(
    parent: Placed, child: Placed, hierarchies: dict[str, Hierarchy], total: int
) -> Relations:
    """Relations ``parent cell = sum of the child block's cells that generalize to it``."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    parents: list[int] = []
    exact: list[bool] = []
    plabels = parent.block.labels
    ctop = (child.block.labels == TOP).to_numpy()
    patterns: dict[tuple[bool, ...], list[int]] = {}
    for cell, kept in enumerate((plabels != TOP).to_numpy()):
        patterns.setdefault(tuple(bool(x) for x in kept), []).append(cell)
    for pattern, members in patterns.items():
        columns = [c for c, kept in zip(plabels.columns, pattern, strict=True) if kept]
        mapped = _children(columns, parent, child, hierarchies, ctop)
        if mapped is None:
            continue
        chosen, keys, split = mapped
        lookup: dict[tuple[str, ...], list[int]] = {}
        for position, key in zip(chosen, keys, strict=True):
            lookup.setdefault(key, []).append(int(position))
        for cell in members:
            found = lookup.get(tuple(plabels.iloc[cell][columns]), [])
            if not found:
                continue
            rows += [len(parents)] * (1 + len(found))
            cols += [parent.offset + cell, *(child.offset + f for f in found)]
            vals += [1.0, *([-1.0] * len(found))]
            parents.append(parent.offset + cell)
            exact.append(split <= child.block.additive)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(len(parents), total))
    return Relations(matrix, np.array(parents, dtype=int), np.array(exact, dtype=bool))


def _children(
    columns: list[str],
    parent: Placed,
    child: Placed,
    hierarchies: dict[str, Hierarchy],
    ctop: np.ndarray,
) -> tuple[np.ndarray, list[tuple[str, ...]], set[str]] | None:
    """The child cells that partition a parent grouping on ``columns``, their parent keys, and
    the columns split (summed over or refined)."""
    cdims = list(child.block.labels.columns)
    if not set(columns) <= set(cdims):
        return None
    split = {c for c in columns if child.levels[c] != parent.levels[c]}
    for c in split:
        hierarchy = hierarchies.get(c)
        if hierarchy is None or not hierarchy.is_coarser_or_equal(
            parent.levels[c], child.levels[c]
        ):
            return None
    wanted = np.array([c not in columns for c in cdims], dtype=bool)
    if child.block.totals:
        chosen = np.flatnonzero((ctop == wanted).all(axis=1))
    else:
        chosen = np.arange(len(child.block.labels))
        split |= set(cdims) - set(columns)
    frame = child.block.labels.iloc[chosen]
    mapped = []
    for c in columns:
        labels = frame[c].tolist()
        if c in split:
            table = hierarchies[c].generalize_labels(labels, child.levels[c], parent.levels[c])
            labels = [table[label] for label in labels]
        mapped.append(labels)
    keys: list[tuple[str, ...]] = (
        [tuple(parts) for parts in zip(*mapped, strict=True)] if columns else [()] * len(chosen)
    )
    return chosen, keys, split


def margin_keys(
    levels: tuple[tuple[str, str], ...], block: Placed, hierarchies: dict[str, Hierarchy]
) -> list[tuple[str, ...]] | None:
    """The cells of the margin at ``levels`` that ``block``'s cells add up to (their labels, in
    the order of ``levels``, once each); None if the block does not add up to that margin."""
    margin = Placed(block.block, dict(levels), 0)
    columns = [column for column, _ in levels]
    ctop = (block.block.labels == TOP).to_numpy()
    mapped = _children(columns, margin, block, hierarchies, ctop)
    return None if mapped is None else list(dict.fromkeys(mapped[1]))


def joint_relations(
    placed: Sequence[Placed], hierarchies: dict[str, Hierarchy], total: int
) -> list[Relations]:
    """Relations between every ordered pair of blocks over the same population."""
    return [cross_relations(a, b, hierarchies, total) for a in placed for b in placed if a is not b]


def carry_over(release: Placed, held: Sequence[Placed], reason: np.ndarray) -> np.ndarray:
    """Reasons with every cell suppressed in a held release of the same population kept
    suppressed (for the reason it had then)."""
    out = reason.copy()
    if not held:
        return out
    mine = _keys(release.block.labels, release.levels)
    for other in held:
        theirs = dict(zip(_keys(other.block.labels, other.levels), other.block.reason, strict=True))
        for cell, key in enumerate(mine):
            before = theirs.get(key)
            if out[cell] is None and before is not None:
                out[cell] = before
    return out


def differencing(
    source: Source,
    plan: AggregatePlan,
    release: Placed,
    held: Sequence[tuple[HeldRelease, AggregatePlan]],
    reason: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reasons with ``differencing`` where a held cell of another population at the same key
    differs from the new cell by 1 to k-1 subjects, and the sums' margins those cells need
    (p percent of the difference they would reveal)."""
    out = reason.copy()
    k, p = plan.protection.k, plan.protection.interval.p
    margins = {name: np.full(len(out), np.nan) for name in release.block.values}
    if not held:
        return out, margins
    mine = _keys(release.block.labels, release.levels)
    for entry, other in held:
        theirs = {key: i for i, key in enumerate(_keys(entry.block.labels, entry.dimensions))}
        matched = [(cell, theirs[key]) for cell, key in enumerate(mine) if key in theirs]
        if not matched:
            continue
        counts = differing_subjects(source, plan, other.filters)
        dims = list(release.block.labels.columns)
        merged = release.block.labels.merge(counts, on=dims, how="left")
        differing = merged["differing"].fillna(0).to_numpy(dtype=int)
        for cell, their in matched:
            d = differing[cell]
            if 0 < d < k:
                out[cell] = out[cell] or "differencing"
            elif d == 0 and entry.block.reason[their] is not None and out[cell] is None:
                out[cell] = entry.block.reason[their]
            else:
                continue
            for name, values in release.block.values.items():
                if name in entry.block.values and name != "subjects":
                    gap = abs(values[cell] - entry.block.values[name][their])
                    margins[name][cell] = p / 100.0 * gap
    return out, margins


def joint_system(
    source: Source,
    plan: AggregatePlan,
    block: Block,
    held: Sequence[tuple[HeldRelease, AggregatePlan]],
) -> tuple[System, dict[str, np.ndarray]]:
    """The release's block, with held cells carried over and differencing cells suppressed,
    stacked with the held blocks of the same population and every relation between them; and
    the sums' margins the differencing cells need."""
    context = context_of(plan)
    same = [
        _completed(source, plan, block, entry, its)
        for entry, its in held
        if entry.context == context
    ]
    others = [(entry, its) for entry, its in held if entry.context != context]
    offsets = np.cumsum([0, len(block), *(len(entry.block) for entry in same)])
    theirs = [
        Placed(e.block, e.dimensions, int(o)) for e, o in zip(same, offsets[1:], strict=False)
    ]
    levels = {d.column: d.level for d in plan.dimensions}
    reason = carry_over(Placed(block, levels, 0), theirs, block.reason)
    reason, margins = differencing(source, plan, Placed(block, levels, 0), others, reason)
    placed = [Placed(replace(block, reason=reason), levels, 0), *theirs]
    if not same:
        return build_system([p.block for p in placed]), margins
    # Every dimension any of these releases grouped by (the same dataset: the same hierarchies).
    dimensions = {d.column: d for _, its in held for d in its.dimensions}
    dimensions.update({d.column: d for d in plan.dimensions})
    hierarchies = {column: d.hierarchy for column, d in dimensions.items()}
    meeting = common_margins(source, plan, dimensions, placed, int(offsets[-1]))
    total = int(offsets[-1]) + sum(len(m.block) for m in meeting)
    cross = joint_relations(placed, hierarchies, total)
    # A common margin adds up cells of the blocks; the blocks' cells add up the cover table.
    cross += [cross_relations(m, p, hierarchies, total) for m in meeting for p in placed]
    cross += [cross_relations(p, m, hierarchies, total) for m in meeting for p in placed]
    return build_system([p.block for p in [*placed, *meeting]], cross), margins


def _completed(
    source: Source, plan: AggregatePlan, block: Block, entry: HeldRelease, its: AggregatePlan
) -> HeldRelease:
    """``entry`` with the quantities the release has and it lacks (it did not publish them: a
    sum the new release adds): their true values, each known only within an infinite error,
    so every relation through one of its published cells leaves that quantity free (the
    partner knows nothing of it there) while the values stay a solution of the relations."""
    missing = [name for name in block.values if name not in entry.block.values]
    if not missing:
        return entry
    truth = _true_block(source, replace(plan, dimensions=its.dimensions, totals=its.totals), None)
    at = {key: row for row, key in enumerate(truth.labels.itertuples(index=False, name=None))}
    keys = entry.block.labels.itertuples(index=False, name=None)
    rows = np.array([at.get(key, -1) for key in keys], dtype=int)
    values = dict(entry.block.values)
    for name in missing:
        values[name] = np.where(rows >= 0, truth.values[name][rows], 0.0)
    nonnegative = entry.block.nonnegative | (truth.nonnegative & set(missing))
    errors = dict(entry.block.errors)
    errors.update({name: np.full(len(rows), np.inf) for name in missing})
    completed = replace(entry.block, values=values, nonnegative=nonnegative, errors=errors)
    return replace(entry, block=completed)


def margin_levels(
    hierarchies: dict[str, Hierarchy], placed: Sequence[Placed]
) -> list[tuple[tuple[str, str], ...]]:
    """The levels of the margins two blocks of one population both add up to and neither
    publishes whole: per pair, the dimensions (columns of ``hierarchies``) both have, each at the
    coarser of their two levels; with three blocks or more, also the table they all add up from
    (the cover table)."""
    wanted: dict[tuple[tuple[str, str], ...], None] = {}
    for index, one in enumerate(placed):
        for other in placed[index + 1 :]:
            levels = tuple(
                (column, level)
                for column, hierarchy in hierarchies.items()
                if column in one.levels and column in other.levels
                for level in [_coarser(hierarchy, one.levels[column], other.levels[column])]
                if level is not None and level != TOP
            )
            if not (_publishes(one, levels) or _publishes(other, levels)):
                wanted[levels] = None
    if len(placed) > 2:
        # Three tables can meet through cells none of them lists (by (a, b), (b, c) and (a, c):
        # an a with one b and one c); the table they all add up from ties them all at once.
        finest = cover_levels(hierarchies, placed)
        if not any(_publishes(one, finest) for one in placed):
            wanted[finest] = None
    return list(wanted)


def common_margins(
    source: Source,
    plan: AggregatePlan,
    dimensions: dict[str, Dimension],
    placed: Sequence[Placed],
    start: int,
) -> list[Placed]:
    """The margins two blocks of one population both add up to and neither publishes whole
    (:func:`margin_levels`), as blocks of unpublished cells (true values from ``source``, the
    population of ``plan``) placed from ``start``."""
    hierarchies = {column: d.hierarchy for column, d in dimensions.items()}
    out: list[Placed] = []
    for levels in margin_levels(hierarchies, placed):
        grouping = tuple(replace(dimensions[c], level=level) for c, level in levels)
        margin = _true_block(source, replace(plan, dimensions=grouping, totals=False), UNPUBLISHED)
        out.append(Placed(margin, dict(levels), start))
        start += len(margin)
    return out


def _true_block(source: Source, plan: AggregatePlan, reason: str | None) -> Block:
    """The true cells of ``plan`` (its population and measures, no noise), every one with
    ``reason``."""
    plan = replace(plan, protection=plan.protection.model_copy(update={"noise": None}))
    cells = compute_cells(source, plan)
    return engine_block(cells, plan, pd.Series(reason, index=cells.index, dtype=object))


def cover_levels(
    hierarchies: dict[str, Hierarchy], placed: Sequence[Placed]
) -> tuple[tuple[str, str], ...]:
    """The cover table's levels: every dimension (column of ``hierarchies``) some block groups
    by, at the finest level any of them uses (τ-ARGUS's cover table of linked tables)."""
    levels: dict[str, str] = {}
    for one in placed:
        for column, level in one.levels.items():
            if column not in hierarchies or level == TOP:
                continue
            known = levels.get(column, level)
            coarser = _coarser(hierarchies[column], known, level)
            levels[column] = level if coarser == known else known
    return tuple((column, levels[column]) for column in hierarchies if column in levels)


def _coarser(hierarchy: Hierarchy, one: str, other: str) -> str | None:
    """The coarser of two levels of a dimension (None if its hierarchy does not order them)."""
    if one == other:
        return one
    if hierarchy.is_coarser_or_equal(one, other):
        return one
    return other if hierarchy.is_coarser_or_equal(other, one) else None


def _publishes(block: Placed, levels: tuple[tuple[str, str], ...]) -> bool:
    """Whether ``block`` publishes every cell of the margin at ``levels`` (its own grouping, or
    one of its totals), so the relations between blocks already meet there."""
    grouped = {c for c, level in block.levels.items() if level != TOP}
    if any(block.levels.get(c) != level for c, level in levels):
        return False
    return block.block.totals or grouped == {c for c, _ in levels}

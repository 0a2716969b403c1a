"""The LP a partner can set up from a published table and the releases it held: the held
releases of the same data and population tied to it as the engine ties them
(:mod:`anonymization.differencing`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from anonymization.blocks import Block, describe_key
from anonymization.differencing import (
    UNPUBLISHED,
    Placed,
    carry_over,
    cross_relations,
    joint_relations,
    margin_keys,
    margin_levels,
)
from anonymization.errors import AuditFailure, InvalidRequest
from anonymization.hierarchies import TOP, CategoricalHierarchy, Hierarchy
from anonymization.manifest import Manifest, ManifestProtection
from anonymization.published import published_block
from anonymization.suppression import System, build_system

COVER_MAX = 100_000  # cells at most of a cover table built from every combination of labels


@dataclass(frozen=True)
class Joint:
    """A published table with the held ones it is tied to, as one LP's cells and relations."""

    system: System
    suppressed: np.ndarray  # the cells the LP solves for (suppressed or of no release)
    joined: int  # held releases in the LP
    other_populations: int  # held releases of other filters (not in the LP)
    cover: bool  # a cover table joined the LP (every label combination, not only those with data)
    protections: list[ManifestProtection]  # each joined held release's requirement


def joint_published(
    block: Block,
    manifest: Manifest,
    held: Sequence[tuple[pd.DataFrame, Manifest]],
    hierarchies: dict[str, Hierarchy],
) -> Joint:
    """The LP the partner can set up from the release and the held files: the held releases of
    the same data and population (subject, filters) are tied to it as the engine ties them
    (:mod:`anonymization.differencing`), with the margins two of them add up to as unknown cells
    and, with three tables or more, the cover table of every combination of their labels (the
    engine's has only the cells with data, so its intervals may be narrower). A cell a held
    release suppressed must be suppressed in the release too."""
    placed = [Placed(block, dict(manifest.plan.dimensions), 0)]
    protections: list[ManifestProtection] = []
    others = 0
    for index, (table, its) in enumerate(held):
        if manifest.data and its.data and manifest.data != its.data:
            raise InvalidRequest(
                "is a release of other data than the audited one "
                f"({' '.join(its.data)}, not {' '.join(manifest.data)})",
                field=f"held.{index}.{its.data[0]}",
            )
        if its.population != manifest.population:
            others += 1
            continue
        start = sum(len(p.block) for p in placed)
        protections.append(its.plan.protection)
        placed.append(
            Placed(_completed(published_block(table, its), block), dict(its.plan.dimensions), start)
        )
    _carried_over(placed)
    masks = [np.array([r is not None for r in p.block.reason], dtype=bool) for p in placed]
    if len(placed) == 1:
        return Joint(build_system([block]), masks[0], 0, others, cover=False, protections=[])
    related = _hierarchies(placed, hierarchies)
    total = sum(len(p.block) for p in placed)
    meeting: list[Placed] = []
    cover = False
    for levels in margin_levels(related, placed):
        labels, product = _margin_labels(levels, placed, related)
        cover |= product
        if labels is None:
            continue  # a cover table too large to build: the LP is looser, never stricter
        margin = _unknown_block(labels, levels, placed, block, related)
        meeting.append(Placed(margin, dict(levels), total))
        total += len(margin)
    cross = joint_relations(placed, related, total)
    cross += [cross_relations(m, p, related, total) for m in meeting for p in placed]
    cross += [cross_relations(p, m, related, total) for m in meeting for p in placed]
    system = build_system([p.block for p in [*placed, *meeting]], cross)
    masks += [np.ones(len(m.block), dtype=bool) for m in meeting]
    return Joint(system, np.concatenate(masks), len(placed) - 1, others, cover, protections)


def _completed(held: Block, release: Block) -> Block:
    """A held block with the quantities the release has and it lacks (it did not publish them):
    known only within an infinite error, so the relations leave them free."""
    missing = [name for name in release.values if name not in held.values]
    if not missing:
        return held
    values = dict(held.values)
    errors = dict(held.errors)
    for name in missing:
        values[name] = np.where([r is None for r in held.reason], 0.0, np.nan)
        errors[name] = np.full(len(held), np.inf)
    return replace(held, values=values, errors=errors)


def _carried_over(placed: list[Placed]) -> None:
    """Raise AuditFailure if the release (first) publishes a cell that a held release
    suppressed at the same key (:func:`carry_over`, what the engine keeps suppressed):
    differencing the two would give it away."""
    release = placed[0]
    for number, other in enumerate(placed[1:], start=1):
        carried = carry_over(release, [other], release.block.reason)
        for cell, (now, before) in enumerate(zip(release.block.reason, carried, strict=True)):
            if now is None and before is not None:
                raise AuditFailure(
                    f"cell ({describe_key(release.block.labels, cell)}) is released, but held "
                    f"release {number} suppressed it ({before}): a cell suppressed once must "
                    "stay suppressed"
                )


def _hierarchies(placed: list[Placed], given: dict[str, Hierarchy]) -> dict[str, Hierarchy]:
    """Per dimension of the tables (in order of appearance), the hierarchy relating their
    levels: the given one where two tables group it at different levels (InvalidRequest naming
    ``policy`` if none is given); any other dimension needs none."""
    levels: dict[str, set[str]] = {}
    for one in placed:
        for column, level in one.levels.items():
            levels.setdefault(column, set()).add(level)
    out: dict[str, Hierarchy] = {}
    for column, used in levels.items():
        hierarchy = given.get(column)
        if hierarchy is None and len(used) > 1:
            raise InvalidRequest(
                f"the releases group {column!r} at levels {sorted(used)}: give the policy that "
                "declares its hierarchy to relate them",
                field="policy",
            )
        out[column] = hierarchy or CategoricalHierarchy(column)
    return out


def _margin_labels(
    levels: tuple[tuple[str, str], ...], placed: list[Placed], hierarchies: dict[str, Hierarchy]
) -> tuple[pd.DataFrame | None, bool]:
    """The cells of the margin at ``levels``: the keys the tables' cells add up to; for a cover
    table (no table adds up to it), every combination of the labels the tables give at those
    levels (None past COVER_MAX cells). The second item tells whether it is such a product."""
    columns = [column for column, _ in levels]
    keys: dict[tuple[str, ...], None] = {}
    mapped = False
    for one in placed:
        found = margin_keys(levels, one, hierarchies)
        if found is not None:
            mapped = True
            keys.update(dict.fromkeys(found))
    if mapped:
        return pd.DataFrame(list(keys), columns=columns, dtype=str), False
    choices = []
    for column, level in levels:
        seen = {
            label
            for one in placed
            if one.levels.get(column) == level
            for label in one.block.labels[column]
            if label != TOP
        }
        choices.append(sorted(seen))
    if math.prod(len(c) for c in choices) > COVER_MAX:
        return None, True
    rows = list(itertools.product(*choices))
    return pd.DataFrame(rows, columns=columns, dtype=str), True


def _unknown_block(
    labels: pd.DataFrame,
    levels: tuple[tuple[str, str], ...],
    placed: list[Placed],
    release: Block,
    hierarchies: dict[str, Hierarchy],
) -> Block:
    """A margin none of the files publishes: every cell unknown. Subjects add up along a
    dimension where some table's do at a level at least as fine."""
    additive = {
        column
        for column, level in levels
        for one in placed
        if column in one.block.additive
        and hierarchies[column].is_coarser_or_equal(level, one.levels[column])
    }
    count = len(labels)
    return Block(
        labels,
        {name: np.full(count, np.nan) for name in release.values},
        np.full(count, UNPUBLISHED, dtype=object),
        False,
        frozenset(additive),
        release.nonnegative,
    )

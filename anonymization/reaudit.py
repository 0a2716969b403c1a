"""The audit from the published files alone: what a data protection officer can check without
the source data.

The table's structure is re-derived from the manifest's plan (dimension columns, measures,
totals); every suppressed cell's interval is recomputed by LP on the published cells only and
compared with the manifest's. The true values are unknown here, so the sums' requirement is
checked in its only verifiable form: some value inside the interval is at least ``p`` percent
away from both ends.

Neither file is trusted: the manifest's fields are checked (:func:`read_manifest`), and so are
the table's statuses, numbers and keys; a suppressed cell that shows a value, or whose reason
is not the manifest's, fails the audit.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from anonymization.audit import intervals
from anonymization.blocks import (
    PROTECTED,
    SUBJECTS,
    Block,
    audited_sums,
    describe_key,
    table_counts,
)
from anonymization.differencing import (
    UNPUBLISHED,
    Placed,
    carry_over,
    cross_relations,
    joint_relations,
    margin_keys,
    margin_levels,
)
from anonymization.errors import AuditFailure, InvalidRequest, invalid_field
from anonymization.hierarchies import TOP, CategoricalHierarchy, Hierarchy
from anonymization.suppression import SubTables, System, build_system

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


class _Bounds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    lower: FiniteFloat | None
    upper: FiniteFloat | None


class _Cell(BaseModel):
    """One suppressed cell of the manifest's audit: its key, its reason and, per quantity
    (``subjects``, each sum), its interval."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, _Bounds] = Field(init=False)
    key: dict[StrictStr, StrictStr]
    reason: StrictStr | None = None


class _Stated(BaseModel):
    """The requirement the manifest's audit says it proved."""

    model_config = ConfigDict(frozen=True)
    subjects_width: StrictInt = Field(ge=1)
    sum_percent: FiniteFloat = Field(gt=0, lt=100)


class _Audit(BaseModel):
    model_config = ConfigDict(frozen=True)
    requirement: _Stated | None = None
    additive_dimensions: list[StrictStr]
    nonnegative: list[StrictStr]
    passed: StrictBool = True
    cells: list[_Cell]
    held_releases: StrictInt = Field(default=0, ge=0)


class _Interval(BaseModel):
    model_config = ConfigDict(frozen=True)
    p: FiniteFloat = Field(default=15.0, gt=0, lt=100)


class _Noise(BaseModel):
    model_config = ConfigDict(frozen=True)
    max: FiniteFloat = Field(default=0.0, ge=0)


class _Protection(BaseModel):
    model_config = ConfigDict(frozen=True)
    k: StrictInt = Field(ge=1)
    interval: _Interval = _Interval()
    noise: _Noise | None = None


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True)
    subject: StrictStr | None = None
    dimensions: dict[StrictStr, StrictStr]
    measures: list[StrictStr]
    filters: dict[StrictStr, object] = Field(default_factory=dict)
    totals: StrictBool
    protection: _Protection


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True)
    digest: StrictStr | None = None


class _Dataset(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: StrictStr | None = None


class _Sha(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    format: Literal["csv", "parquet", "json"]


class Manifest(BaseModel):
    """What the audit reads of a release's manifest (other fields are left alone)."""

    model_config = ConfigDict(frozen=True)
    plan: _Plan
    audit: _Audit
    input: _Input | None = None  # an offline release: the data file's digest
    dataset: _Dataset | None = None  # a release of the service: the dataset's id
    output: _Output | None = None  # an offline release: its one file
    outputs: dict[Literal["csv", "parquet", "json"], _Sha] | None = None  # the service's files
    # What the manifest says of the table (the engine writes every one; checked against it).
    cells: StrictInt = Field(ge=0)
    released: StrictInt = Field(ge=0)
    suppressed: StrictInt = Field(ge=0)
    suppressed_by_reason: dict[StrictStr, StrictInt]
    complements: StrictInt = Field(ge=0)

    @property
    def data(self) -> tuple[str, str] | None:
        """What the release was made from, as (field, value): the data file's digest, or the
        service's dataset."""
        if self.input is not None and self.input.digest:
            return "input.digest", self.input.digest
        if self.dataset is not None and self.dataset.id:
            return "dataset.id", self.dataset.id
        return None

    @property
    def dims(self) -> list[str]:
        """The dimension columns, in order."""
        return list(self.plan.dimensions)

    @property
    def population(self) -> str:
        """The population the release counts: its subject and filters, as canonical JSON (the
        engine ties held releases to a new one only when they count the same population)."""
        return json.dumps([self.plan.subject, self.plan.filters], sort_keys=True)


def read_manifest(document: object) -> Manifest:
    """The parts of a manifest the audit reads, checked: a malformed one is an InvalidRequest
    naming the field (``manifest.plan.protection.k``)."""
    try:
        return Manifest.model_validate(document)
    except ValidationError as error:
        raise invalid_field(error, "manifest") from None


def published_block(table: pd.DataFrame, manifest: Manifest) -> Block:
    """The block of a published table: values of released cells, NaN where suppressed; with
    noise, each published ``subjects`` is known only within that distance of the truth, and a
    sum published as mean and count only within the mean's rounding. A
    release that does not publish ``subjects`` gives nothing about them: only its sums are
    audited."""
    dims, measures = manifest.dims, manifest.plan.measures
    missing = [c for c in [*dims, *measures, "status", "reason"] if c not in table.columns]
    if missing:
        raise InvalidRequest(f"the table has no column {missing[0]!r}", field="table")
    status = table["status"].astype(str)
    unknown = sorted(set(status) - {"released", "suppressed"})
    if unknown:
        raise InvalidRequest(
            f"status must be released or suppressed, not {unknown[0]!r}", field="status"
        )
    labels = table[dims].astype(str).reset_index(drop=True)
    twice = labels.duplicated()
    if twice.any():
        where = describe_key(labels, int(np.flatnonzero(twice)[0]))
        raise InvalidRequest(f"the table lists the cell ({where}) twice", field="table")
    hidden = (status == "suppressed").to_numpy()
    for column in measures:
        shown = table[column].astype(str).str.strip().ne("") & table[column].notna()
        leak = np.flatnonzero(hidden & shown.to_numpy())
        if len(leak):
            where = describe_key(labels, int(leak[0]))
            raise AuditFailure(f"suppressed cell ({where}) shows its {column}")
    values = {SUBJECTS: _numbers(table[SUBJECTS])} if SUBJECTS in measures else {}
    for column in audited_sums(measures):
        values[f"{column}_sum"] = _sum_of(table, column, measures)
    for name, value in values.items():
        if np.isnan(value[~hidden]).any() and name == SUBJECTS:
            raise InvalidRequest(f"a released cell has no {name}", field=name)
        values[name] = np.where(hidden, np.nan, np.nan_to_num(value))
    reason = table["reason"].astype(object).to_numpy().copy()
    reason[~hidden] = None
    noise = manifest.plan.protection.noise
    spread = noise.max if noise is not None and SUBJECTS in values else 0.0
    if SUBJECTS in values:
        _released_meet_k(labels, values[SUBJECTS], hidden, manifest.plan.protection.k - spread)
    errors = {SUBJECTS: np.full(len(table), spread)} if spread else {}
    for column in audited_sums(measures):
        error = _sum_error(table, column, measures)
        if error is not None:
            errors[f"{column}_sum"] = error
    return Block(
        labels,
        values,
        reason,
        manifest.plan.totals,
        frozenset(manifest.audit.additive_dimensions),
        frozenset(manifest.audit.nonnegative),
        errors,
    )


def _released_meet_k(
    labels: pd.DataFrame, subjects: np.ndarray, hidden: np.ndarray, least: float
) -> None:
    """Raise AuditFailure naming the first released cell whose subjects count is not a whole
    number of at least ``least`` (k, less the noise's reach when counts are perturbed)."""
    bad = np.flatnonzero(~hidden & ((subjects < least) | (subjects != np.round(subjects))))
    if len(bad):
        where = describe_key(labels, int(bad[0]))
        value = float(subjects[bad[0]])
        shown = f"{value:g}" if value == round(value) else repr(value)
        raise AuditFailure(
            f"released cell ({where}) has {shown} subjects: a released count is a "
            f"whole number of at least {least:g}",
            field=SUBJECTS,
        )


def _numbers(column: pd.Series) -> np.ndarray:
    """A published column as floats, NaN where empty (text, nullable or float columns); any
    other value that is not a finite number is an error naming the column."""
    given = column.replace("", None)
    numbers = pd.to_numeric(given, errors="coerce").astype("Float64")
    out = numbers.to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero((given.notna().to_numpy() & np.isnan(out)) | np.isinf(out))
    if len(bad):
        value = column.iloc[int(bad[0])]
        raise InvalidRequest(f"{value!r} is not a finite number", field=str(column.name))
    return out


def _sum_of(table: pd.DataFrame, column: str, measures: list[str]) -> np.ndarray:
    if f"{column}_sum" in measures:
        return _numbers(table[f"{column}_sum"])
    mean, count = _numbers(table[f"{column}_mean"]), _numbers(table[f"{column}_count"])
    return np.asarray(np.nan_to_num(mean) * np.nan_to_num(count))


def _sum_error(table: pd.DataFrame, column: str, measures: list[str]) -> np.ndarray | None:
    """How far mean × count may be from the sum (the mean is rounded to 1e-6)."""
    if f"{column}_sum" in measures:
        return None
    count = _numbers(table[f"{column}_count"])
    return np.asarray(5e-7 * np.nan_to_num(count) + 1e-9)


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


COVER_MAX = 100_000  # cells at most of a cover table built from every combination of labels


@dataclass(frozen=True)
class Joint:
    """A published table with the held ones it is tied to, as one LP's cells and relations."""

    system: System
    suppressed: np.ndarray  # the cells the LP solves for (suppressed or of no release)
    joined: int  # held releases in the LP
    other_populations: int  # held releases of other filters (not in the LP)
    cover: bool  # a cover table joined the LP (every label combination, not only those with data)
    protections: list[_Protection]  # each joined held release's requirement


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
    protections: list[_Protection] = []
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


def _stated(manifest: Manifest, dims: list[str]) -> dict[tuple[str, ...], _Cell]:
    """The manifest's audited cells by key (their labels in the order of ``dims``)."""
    out: dict[tuple[str, ...], _Cell] = {}
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
    stated: _Bounds | None, low: float, high: float, name: str, where: str, held: int
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


def _bounds(stated: _Bounds | None) -> tuple[float, float]:
    """A stated interval as floats (``null`` sides infinite)."""
    assert stated is not None
    low = -np.inf if stated.lower is None else stated.lower
    return low, np.inf if stated.upper is None else stated.upper


def _within(stated: _Bounds | None, low: float, high: float, name: str, where: str) -> None:
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


def _show(stated: _Bounds | None) -> str:
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

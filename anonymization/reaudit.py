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

from collections.abc import Callable
from dataclasses import dataclass
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
from anonymization.blocks import PROTECTED, SUBJECTS, Block, audited_sums, describe_key
from anonymization.errors import AuditFailure, InvalidRequest, invalid_field
from anonymization.relations import Quantity
from anonymization.suppression import SubTables, build_system

TOLERANCE = 1e-4


@dataclass(frozen=True)
class ReauditResult:
    """What the re-audit checked."""

    cells: int
    suppressed: int
    protected: int
    subjects: bool  # whether the table publishes subjects (else only its sums are audited)
    held: int  # releases held with it (its intervals were checked to contain the manifest's)


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


class _Audit(BaseModel):
    model_config = ConfigDict(frozen=True)
    additive_dimensions: list[StrictStr]
    nonnegative: list[StrictStr]
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
    dimensions: dict[StrictStr, object]
    measures: list[StrictStr]
    totals: StrictBool
    protection: _Protection


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    format: Literal["csv", "parquet", "json"]


class Manifest(BaseModel):
    """What the audit reads of a release's manifest (other fields are left alone)."""

    model_config = ConfigDict(frozen=True)
    plan: _Plan
    audit: _Audit
    output: _Output | None = None

    @property
    def dims(self) -> list[str]:
        """The dimension columns, in order."""
        return list(self.plan.dimensions)


def read_manifest(document: object) -> Manifest:
    """The parts of a manifest the audit reads, checked: a malformed one is an InvalidRequest
    naming the field (``manifest.plan.protection.k``)."""
    try:
        return Manifest.model_validate(document)
    except ValidationError as error:
        raise invalid_field(error, "manifest") from None


def published_block(table: pd.DataFrame, manifest: Manifest) -> Block:
    """The block of a published table: values of released cells, NaN where suppressed; with
    noise, each published ``subjects`` is known only within that distance of the truth. A
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
    return Block(
        labels,
        values,
        reason,
        manifest.plan.totals,
        frozenset(manifest.audit.additive_dimensions),
        frozenset(manifest.audit.nonnegative),
        {SUBJECTS: np.full(len(table), spread)} if spread else {},
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
) -> ReauditResult:
    """Recompute every suppressed cell's interval from ``table`` and check it against the
    manifest and the requirement; raise AuditFailure naming the first cell that fails.
    ``progress`` hears how far a long audit is."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    dims, measures = manifest.dims, manifest.plan.measures
    block = published_block(table, manifest)
    system = build_system([block])
    quantities = [
        Quantity(
            q.name,
            q.values,
            q.nonnegative,
            q.error if q.name == SUBJECTS else _sum_error(table, q.name[:-4], measures),
        )
        for q in system.quantities
    ]
    hidden = np.flatnonzero((table["status"].astype(str) == "suppressed").to_numpy())
    suppressed = np.isin(np.arange(len(table)), hidden)
    nearby = SubTables(block.labels)
    bounds = intervals(system.relations, quantities, suppressed, hidden, progress, nearby)
    stated = _stated(manifest, dims)
    protection = manifest.plan.protection
    held = manifest.audit.held_releases
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
            if held:
                # The manifest's interval came from an LP that also read the held releases:
                # this table alone can only confirm it is no wider than what it gives.
                _within(claimed, low, high, name, where)
                low, high = _bounds(claimed)
            else:
                _same(claimed, low, high, name, where)
            if block.reason[row] in PROTECTED:
                _requirement(name, low, high, protection.k, protection.interval.p, where)
        protected += block.reason[row] in PROTECTED
    if stated:
        where = ", ".join(f"{d}={v}" for d, v in zip(dims, next(iter(stated)), strict=True))
        raise AuditFailure(
            f"the manifest's audit lists a cell ({where}) the table does not suppress"
        )
    return ReauditResult(len(table), len(hidden), protected, SUBJECTS in measures, held)


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


def _same(stated: _Bounds | None, low: float, high: float, name: str, where: str) -> None:
    def close(value: float | None, found: float) -> bool:
        if value is None:
            return bool(np.isinf(found))
        return bool(abs(found - value) <= TOLERANCE * (1 + abs(value)))

    if stated is None or not (close(stated.lower, low) and close(stated.upper, high)):
        raise AuditFailure(
            f"cell ({where}): the manifest states {name} in {_show(stated)}, "
            f"the published cells give [{low:g}, {high:g}]"
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
        f"[{low:g}, {high:g}] that the published cells give"
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

"""The audit from the published files alone: what a data protection officer can check without
the source data.

The table's structure is re-derived from the manifest's plan (dimension columns, measures,
totals); every suppressed cell's interval is recomputed by LP on the published cells only and
compared with the manifest's. The true values are unknown here, so the sums' requirement is
checked in its only verifiable form: some value inside the interval is at least ``p`` percent
away from both ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from anonymization.audit import intervals
from anonymization.blocks import PROTECTED, SUBJECTS, Block, audited_sums, describe_key
from anonymization.errors import AuditFailure, InvalidRequest
from anonymization.relations import Quantity
from anonymization.suppression import SubTables, build_system

TOLERANCE = 1e-4


@dataclass(frozen=True)
class ReauditResult:
    """What the re-audit checked."""

    cells: int
    suppressed: int
    protected: int


def _plan(
    manifest: dict[str, Any],
) -> tuple[list[str], list[str], bool, int, float, float, dict[str, Any]]:
    try:
        plan = manifest["plan"]
        dims = list(plan["dimensions"])
        measures = list(plan["measures"])
        totals = bool(plan["totals"])
        k = int(plan["protection"]["k"])
        p = float(plan["protection"].get("interval", {}).get("p", 15.0))
        noise = float((plan["protection"].get("noise") or {}).get("max", 0))
        audit = manifest["audit"]
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InvalidRequest(f"the manifest has no valid {error}", field="manifest") from None
    return dims, measures, totals, k, p, noise, audit


def published_block(
    table: pd.DataFrame,
    dims: list[str],
    measures: list[str],
    totals: bool,
    audit: dict[str, Any],
    noise: float = 0.0,
) -> Block:
    """The block of a published table: values of released cells, NaN where suppressed; with
    ``noise``, each published ``subjects`` is known only within that distance of the truth."""
    missing = [c for c in [*dims, *measures, "status", "reason"] if c not in table.columns]
    if missing:
        raise InvalidRequest(f"the table has no column {missing[0]!r}", field="table")
    hidden = (table["status"] == "suppressed").to_numpy()
    values = {SUBJECTS: _numbers(table[SUBJECTS])}
    for column in audited_sums(measures):
        values[f"{column}_sum"] = _sum_of(table, column, measures)
    for name, value in values.items():
        if np.isnan(value[~hidden]).any() and name == SUBJECTS:
            raise InvalidRequest(f"a released cell has no {name}", field=name)
        values[name] = np.where(hidden, np.nan, np.nan_to_num(value))
    reason = table["reason"].astype(object).to_numpy().copy()
    reason[~hidden] = None
    return Block(
        table[dims].astype(str).reset_index(drop=True),
        values,
        reason,
        totals,
        frozenset(audit.get("additive_dimensions", [])),
        frozenset(audit.get("nonnegative", [])),
        {SUBJECTS: np.full(len(table), noise)} if noise else {},
    )


def _numbers(column: pd.Series) -> np.ndarray:
    """A published column as floats, NaN where empty (text, nullable or float columns)."""
    numbers = pd.to_numeric(column.replace("", None), errors="coerce").astype("Float64")
    return numbers.to_numpy(dtype=float, na_value=np.nan)


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
    manifest: dict[str, Any],
    progress: Callable[[str], None] | None = None,
) -> ReauditResult:
    """Recompute every suppressed cell's interval from ``table`` and check it against the
    manifest and the requirement; raise AuditFailure naming the first cell that fails.
    ``progress`` hears how far a long audit is."""
    dims, measures, totals, k, p, noise, audit = _plan(manifest)
    block = published_block(table, dims, measures, totals, audit, noise)
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
    hidden = np.flatnonzero((table["status"] == "suppressed").to_numpy())
    suppressed = np.isin(np.arange(len(table)), hidden)
    nearby = SubTables(block.labels)
    bounds = intervals(system.relations, quantities, suppressed, hidden, progress, nearby)
    stated = {_key(entry["key"], dims): entry for entry in audit.get("cells", [])}
    protected = 0
    for position, row in enumerate(hidden):
        where = describe_key(block.labels, int(row))
        entry = stated.get(tuple(block.labels.iloc[row]))
        if entry is None:
            raise AuditFailure(f"suppressed cell ({where}) is not in the manifest's audit")
        for name, bound in bounds.items():
            low, high = bound[position]
            _same(entry.get(name), low, high, name, where)
            if block.reason[row] in PROTECTED:
                _requirement(name, low, high, k, p, where)
        protected += block.reason[row] in PROTECTED
    if len(stated) != len(hidden):
        raise AuditFailure("the manifest's audit lists cells the table does not suppress")
    return ReauditResult(len(table), len(hidden), protected)


def _key(key: dict[str, str], dims: list[str]) -> tuple[str, ...]:
    return tuple(str(key.get(d)) for d in dims)


def _same(stated: Any, low: float, high: float, name: str, where: str) -> None:
    def close(value: float | None, found: float) -> bool:
        if value is None:
            return bool(np.isinf(found))
        return bool(abs(found - value) <= TOLERANCE * (1 + abs(value)))

    if not isinstance(stated, dict) or not (
        close(stated.get("lower"), low) and close(stated.get("upper"), high)
    ):
        raise AuditFailure(
            f"cell ({where}): the manifest states {name} in {_show(stated)}, "
            f"the published cells give [{low:g}, {high:g}]"
        )


def _show(stated: Any) -> str:
    if not isinstance(stated, dict):
        return "nothing"
    return f"[{stated.get('lower')}, {stated.get('upper')}]"


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

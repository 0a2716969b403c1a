"""A published table read back as the engine's block: released values, NaN where suppressed,
and how far each published number may be from the truth (noise, a mean's rounding)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anonymization.blocks import SUBJECTS, Block, audited_sums, describe_key
from anonymization.errors import AuditFailure, InvalidRequest
from anonymization.manifest import Manifest


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
    # A mean is the sum over max(count, 1): noise may publish a count of 0 for a cell with values.
    mean, count = _numbers(table[f"{column}_mean"]), _numbers(table[f"{column}_count"])
    return np.asarray(np.nan_to_num(mean) * np.maximum(np.nan_to_num(count), 1.0))


def _sum_error(table: pd.DataFrame, column: str, measures: list[str]) -> np.ndarray | None:
    """How far mean × max(count, 1) may be from the sum (the mean is rounded to 1e-6)."""
    if f"{column}_sum" in measures:
        return None
    count = _numbers(table[f"{column}_count"])
    return np.asarray(5e-7 * np.maximum(np.nan_to_num(count), 1.0) + 1e-9)

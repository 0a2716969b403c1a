"""Measure k, l and t of a released table directly from its rows (the partner's view).

Computed with a plain group-by on the released labels, independently of the search's integer
encoding, so the manifest states what the published file itself satisfies. t is measured
against the released table's own distribution: ordered distance for numeric sensitive values,
equal distance otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _closeness(table: pd.DataFrame, groups: pd.Series, column: str) -> float:
    values = table[column]
    numbers = pd.to_numeric(values, errors="coerce")
    ordered = not numbers.isna().any()
    key = numbers if ordered else values.astype(str)
    counts = pd.crosstab(groups, key)
    if ordered:
        counts = counts.reindex(sorted(counts.columns), axis=1)
    shares = counts.div(counts.sum(axis=1), axis=0).to_numpy()
    overall = counts.sum(axis=0).to_numpy() / counts.to_numpy().sum()
    extra = shares - overall[None, :]
    if ordered:
        distance = np.abs(np.cumsum(extra, axis=1)).sum(axis=1) / max(extra.shape[1] - 1, 1)
    else:
        distance = 0.5 * np.abs(extra).sum(axis=1)
    return float(distance.max())


def measure(
    table: pd.DataFrame, quasi_identifiers: Sequence[str], sensitive: Sequence[str]
) -> dict[str, float | int | None]:
    """Smallest class size, distinct and entropy l, and t of ``table``'s equivalence classes."""
    if table.empty:
        return {"k": None, "l_distinct": None, "l_entropy": None, "t": None}
    groups = table.groupby(list(quasi_identifiers), sort=False, dropna=False).ngroup()
    result: dict[str, float | int | None] = {"k": int(groups.value_counts().min())}
    if sensitive:
        distinct, entropy, closeness = [], [], []
        for column in sensitive:
            frequencies = table.groupby([groups, table[column]]).size()
            shares = frequencies / frequencies.groupby(level=0).transform("sum")
            distinct.append(int(frequencies.groupby(level=0).size().min()))
            entropy.append(float((-(shares * np.log(shares))).groupby(level=0).sum().min()))
            closeness.append(_closeness(table, groups, column))
        result["l_distinct"] = min(distinct)
        result["l_entropy"] = round(float(np.exp(min(entropy))), 6)
        result["t"] = round(max(closeness), 6)
    return result

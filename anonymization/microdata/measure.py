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

_CELLS = 10_000_000


def _closeness(table: pd.DataFrame, groups: pd.Series, column: str) -> float:
    numbers = pd.to_numeric(table[column], errors="coerce")
    ordered = not numbers.isna().any()
    values, _ = pd.factorize(numbers if ordered else table[column].astype(str), sort=True)
    width = int(values.max()) + 1
    group_ids = groups.to_numpy()
    count = int(group_ids.max()) + 1
    overall = np.bincount(values, minlength=width) / len(values)
    worst = 0.0
    step = max(_CELLS // width, 1)
    for first in range(0, count, step):
        rows = (group_ids >= first) & (group_ids < first + step)
        local = group_ids[rows] - first
        cells = np.bincount(local * width + values[rows], minlength=step * width)
        counts = cells.reshape(step, width)
        sizes = counts.sum(axis=1)
        present = sizes > 0
        extra = counts[present] / sizes[present, None] - overall[None, :]
        if ordered:
            moved = np.abs(np.cumsum(extra, axis=1)).sum(axis=1) / max(width - 1, 1)
        else:
            moved = 0.5 * np.abs(extra).sum(axis=1)
        worst = max(worst, float(moved.max(initial=0.0)))
    return worst


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

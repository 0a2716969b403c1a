"""An independent, naive audit for the tests: equations written cell by cell from a published
table, bounds by scipy's linprog, no shared code with the engine's audit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linprog


def reference_intervals(
    table: pd.DataFrame,
    dims: list[str],
    column: str,
    additive: set[str],
    nonnegative: bool,
    error: float = 0.0,
) -> dict[int, tuple[float, float]]:
    """Bounds of ``column`` in every suppressed row of ``table`` (a release with totals); with
    ``error``, each published value is only known within that distance (noise)."""
    hidden = [i for i in range(len(table)) if table["status"].iloc[i] == "suppressed"]
    position = {row: n for n, row in enumerate(hidden)}
    keys = {tuple(table[dims].iloc[i]): i for i in range(len(table))}
    eq_rows, eq_rhs, ub_rows, ub_rhs = [], [], [], []

    def row_of(terms: list[tuple[int, float]]) -> tuple[np.ndarray, float, float]:
        coefs, rhs, slack = np.zeros(len(hidden)), 0.0, 0.0
        for cell, sign in terms:
            if cell in position:
                coefs[position[cell]] += sign
            else:
                rhs -= sign * float(table[column].iloc[cell])
                slack += error
        return coefs, rhs, slack

    for parent_key, parent in keys.items():
        for d, dim in enumerate(dims):
            if parent_key[d] != "*":
                continue
            children = [
                cell
                for key, cell in keys.items()
                if key[d] != "*"
                and all(key[o] == parent_key[o] for o in range(len(dims)) if o != d)
            ]
            terms = [(parent, 1.0)] + [(c, -1.0) for c in children]
            coefs, rhs, slack = row_of(terms)
            if (column != "subjects" or dim in additive) and not slack:
                eq_rows.append(coefs)
                eq_rhs.append(rhs)
                continue
            ub_rows.append(coefs)
            ub_rhs.append(rhs + slack)
            if column != "subjects" or dim in additive:
                ub_rows.append(-coefs)
                ub_rhs.append(-rhs + slack)
                continue
            for child in children:
                coefs, rhs, slack = row_of([(child, 1.0), (parent, -1.0)])
                ub_rows.append(coefs)
                ub_rhs.append(rhs + slack)
    bounds = [(0, None) if nonnegative else (None, None)] * len(hidden)
    out = {}
    for row, n in position.items():
        found = []
        for sense in (1.0, -1.0):
            cost = np.zeros(len(hidden))
            cost[n] = sense
            result = linprog(
                cost,
                A_ub=np.array(ub_rows) if ub_rows else None,
                b_ub=np.array(ub_rhs) + 1e-6 if ub_rows else None,
                A_eq=np.array(eq_rows) if eq_rows else None,
                b_eq=np.array(eq_rhs) if eq_rows else None,
                bounds=bounds,
                method="highs",
            )
            found.append(sense * result.fun if result.status == 0 else -sense * np.inf)
        out[row] = (found[0], found[1])
    return out


def meets_requirement(
    subjects: tuple[float, float], sums: tuple[float, float], value: float, k: int, p: float
) -> bool:
    """Whether a protected cell's intervals (by :func:`reference_intervals`) meet the
    requirement: subjects at least ``k`` wide, the sum reaching ``p`` % below and above
    ``value`` (within 1e-6)."""
    (low, high), (sum_low, sum_high) = subjects, sums
    return (
        high - low >= k - 1e-6
        and sum_low <= value * (1 - p / 100) + 1e-6
        and sum_high >= value * (1 + p / 100) - 1e-6
    )

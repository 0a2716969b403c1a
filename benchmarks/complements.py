"""Benchmark: how many complements secondary suppression chooses, and how fast, by the exact
method (where the table is small enough for it) and by the greedy one, on random 3-dimension
tables with totals (k=5, p=15): subjects spread over the labels by a heavy-tailed law, so that
a share of the cells fall below k."""

from __future__ import annotations

import argparse
import time
from unittest.mock import patch

import numpy as np
import pandas as pd

from anonymization import exact
from anonymization.hierarchies import CategoricalHierarchy
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import IntervalRequirement, Protection
from anonymization.release import Release, run_release

DIMENSIONS = {"a": 14, "b": 10, "c": 8}  # labels per dimension


def table(seed: int, subjects: int) -> pd.DataFrame:
    """``subjects`` rows (one per subject) with a label per dimension and an amount."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {"subject": [f"s{i}" for i in range(subjects)]}
    for name, labels in DIMENSIONS.items():
        weight = rng.pareto(1.0, labels) + 0.1
        columns[name] = [
            f"{name}{x}" for x in rng.choice(labels, subjects, p=weight / weight.sum())
        ]
    columns["x"] = rng.gamma(2.0, 50.0, subjects)
    return pd.DataFrame(columns)


def release(data: pd.DataFrame) -> Release:
    plan = AggregatePlan(
        subject="subject",
        dimensions=tuple(
            Dimension(name, CategoricalHierarchy(name), "value", "value") for name in DIMENSIONS
        ),
        measures=(Measure("x", "sum"), Measure(None, "subjects")),
        protection=Protection(k=5, interval=IntervalRequirement(p=15.0)),
        totals=True,
    )
    return run_release(data, plan)


def timed(data: pd.DataFrame) -> tuple[Release, float]:
    start = time.perf_counter()
    out = release(data)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="tables of each size")
    parser.add_argument(
        "--subjects", type=int, nargs="+", default=[1500, 6000], help="subjects per table"
    )
    args = parser.parse_args()
    for subjects in args.subjects:
        for seed in range(args.seeds):
            data = table(seed, subjects)
            chosen, seconds = timed(data)
            with patch.object(exact, "MAX_SIZE", 0):
                greedy, greedy_seconds = timed(data)
            counts = chosen.counts()
            method = str(counts["complements_method"]).split(":")[0]
            primary = counts["suppressed"] - counts["complements"]
            print(
                f"{subjects:,} subjects, seed {seed}: {counts['cells']:,} cells, "
                f"{primary:,} below k or dominated; {method}: {counts['complements']} complements "
                f"in {seconds:.1f} s; greedy: {greedy.counts()['complements']} in "
                f"{greedy_seconds:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Benchmark: secondary suppression and the LP audit on a 3-dimension table with totals
(commune × month × tariff over smart-meter readings), timed apart from the aggregation.

Target: protection + audit under 50 % of the aggregation time on that table."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from meters import meters_file

from anonymization.audit import intervals
from anonymization.blocks import engine_block
from anonymization.cells import compute_cells
from anonymization.hierarchies import CategoricalHierarchy, TimeHierarchy, builtin
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import DominanceRule, Protection, primary_suppression
from anonymization.secondary import secondary_suppression
from anonymization.suppression import SubTables, build_system, requirement


def plan() -> AggregatePlan:
    geo = builtin("geo_fr")
    assert geo is not None
    return AggregatePlan(
        subject="meter_id",
        dimensions=(
            Dimension("iris", geo, "iris", "commune"),
            Dimension("date", TimeHierarchy(), "day", "month"),
            Dimension("tariff", CategoricalHierarchy("tariff"), "value", "value"),
        ),
        measures=(Measure("kwh", "sum"), Measure(None, "subjects")),
        protection=Protection(k=10, dominance=DominanceRule(n=1, percent=85, measure="kwh")),
        totals=True,
    )


class OutOfTime(Exception):
    """The phase ran past its time budget."""


def budget(seconds: float, progress: list[str]) -> Callable[[str], None]:
    """A progress callback that keeps the last message and stops the phase past ``seconds``."""
    deadline = time.perf_counter() + seconds

    def report(message: str) -> None:
        progress.append(message)
        if time.perf_counter() > deadline:
            raise OutOfTime(message)

    return report


def run(rows: int, seconds: float) -> None:
    """Aggregate ``rows`` readings with totals, then time secondary suppression and the audit,
    each stopped after ``seconds`` (saying how far it got)."""
    data = meters_file(rows)
    the_plan = plan()
    start = time.perf_counter()
    cells = compute_cells(str(data), the_plan)
    aggregation = time.perf_counter() - start
    print(f"rows: {rows:,}  cells: {len(cells):,} (with totals)", flush=True)
    print(f"aggregation (DuckDB):   {aggregation:7.2f} s", flush=True)

    start = time.perf_counter()
    block = engine_block(cells, the_plan, primary_suppression(cells, the_plan.protection))
    system = build_system([block])
    needs = requirement(system, the_plan.protection.k, the_plan.protection.interval.p, {})
    primary = np.array([r is not None for r in system.reason])
    free = np.ones(len(primary), dtype=bool)
    setup = time.perf_counter() - start
    print(f"relations + primary:    {setup:7.2f} s ({int(primary.sum()):,} primary)", flush=True)

    seen: list[str] = []
    start = time.perf_counter()
    try:
        nearby = SubTables(block.labels)
        chosen = secondary_suppression(
            system.relations, system.quantities, primary, needs, free, budget(seconds, seen), nearby
        )
        mask = chosen.mask
    except OutOfTime as stop:
        print(f"secondary suppression:  stopped after {seconds:.0f} s (at: {stop})", flush=True)
        return
    secondary = time.perf_counter() - start
    print(
        f"secondary suppression:  {secondary:7.2f} s "
        f"({int((mask & ~primary).sum()):,} complements; additive: {sorted(block.additive)})",
        flush=True,
    )
    print(f"  method: {chosen.method}", flush=True)

    start = time.perf_counter()
    targets = np.flatnonzero(mask)
    try:
        intervals(system.relations, system.quantities, mask, targets, budget(seconds, seen), nearby)
    except OutOfTime as stop:
        print(f"audit: stopped after {seconds:.0f} s (at: {stop})", flush=True)
        return
    audit = time.perf_counter() - start

    protection = setup + secondary + audit
    print(f"audit ({len(targets):,} cells x 2 quantities x 2 bounds): {audit:7.2f} s")
    print(
        f"protection + audit = {protection:.2f} s = {100 * protection / aggregation:.0f} % "
        "of the aggregation (target < 50 %)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000_000, 10_000_000], help="table sizes"
    )
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per phase at most")
    args = parser.parse_args()
    for rows in args.rows:
        run(rows, args.budget)
        print(flush=True)


if __name__ == "__main__":
    main()

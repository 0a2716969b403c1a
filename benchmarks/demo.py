"""Benchmark: `partage demo generate` at its default sizes (1M payments, 2,000 meters × 365
days) with and without CSV; `--meters 200000` for the large consumption set (73M rows)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from service.demo.consumption import ConsumptionGenerator
from service.demo.generate import Generator, generate
from service.demo.payments import PaymentsGenerator


def measure(name: str, generator: Generator, csv: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        result = generate(generator, Path(directory), name, csv, lambda _rows: None)
        seconds = time.perf_counter() - started
        sizes = ", ".join(f"{p.suffix[1:]} {p.stat().st_size / 1e6:.0f} MB" for p in result.paths)
        print(
            f"{name:<12} {result.rows:>11,} rows  csv={'yes' if csv else 'no ':<3}  "
            f"{seconds:6.1f} s  {result.rows / seconds / 1e6:5.2f} M rows/s  ({sizes})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--meters", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    for csv in (False, True):
        measure("payments", PaymentsGenerator(args.rows, 2025), csv)
        measure("consumption", ConsumptionGenerator(args.meters, args.days, 2025, ["74"]), csv)


if __name__ == "__main__":
    main()

"""Benchmark: `partage release` end to end (protected table and manifest) against a bare DuckDB
script doing the same read and aggregation (distinct meters and kWh sum by commune × month ×
tariff). Prints times, their ratio and each process's peak memory."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meters import meters_file

POLICY = """
dataset:
  subject: meter_id
  columns:
    iris: {hierarchy: geo_fr, level: iris}
    date: {hierarchy: time}
    tariff: {}
    kwh: {type: measure}
release:
  dimensions: {iris: iris, date: day, tariff: value}
  measures: {kwh: [sum, mean]}
  protection: {k: 10, dominance: {n: 1, percent: 85}}
"""
REQUEST = """
group_by: {iris: commune, date: month, tariff: value}
measures: [kwh.sum, kwh.mean, subjects]
format: parquet
"""
BARE = """
import duckdb, sys
con = duckdb.connect()
con.execute('''COPY (SELECT substr(iris, 1, 5) AS commune, strftime(date, '%Y-%m') AS month, tariff,
       count(DISTINCT meter_id) AS subjects, sum(kwh) AS kwh_sum, avg(kwh) AS kwh_mean
FROM read_parquet(?) GROUP BY ALL) TO '{out}' (FORMAT parquet)''', [sys.argv[1]])
"""


def timed(command: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak resident memory (MiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = meters_file(args.rows)
    partage = str(Path(sys.executable).with_name("partage"))
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        (folder / "policy.yaml").write_text(POLICY)
        (folder / "request.yaml").write_text(REQUEST)
        bare = BARE.replace("{out}", str(folder / "bare.parquet"))
        release = [
            partage,
            "release",
            str(data),
            "--policy",
            str(folder / "policy.yaml"),
            "--request",
            str(folder / "request.yaml"),
            "--out",
            str(folder / "out.parquet"),
            "--manifest",
            str(folder / "manifest.json"),
            "--quiet",
        ]
        runs = [
            (timed(release), timed([sys.executable, "-c", bare, str(data)]))
            for _ in range(args.repeat)
        ]
    best_release = min(r[0] for r, _ in runs)
    best_bare = min(b[0] for _, b in runs)
    print(
        f"release engine, {args.rows:,} rows (commune × month × tariff, k=10, dominance), "
        f"best of {args.repeat}:"
    )
    print(f"  partage release   {best_release:7.2f} s   peak {max(r[1] for r, _ in runs):7.0f} MiB")
    print(f"  bare DuckDB       {best_bare:7.2f} s   peak {max(b[1] for _, b in runs):7.0f} MiB")
    print(f"  ratio             {best_release / best_bare:7.2f}   (target <= 1.5)")


if __name__ == "__main__":
    main()

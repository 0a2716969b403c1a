"""Smart-meter-like data for benchmarks: fixed seed, vectorised, cached under bench-data/."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench-data"
REFERENCE = ROOT / "anonymization" / "reference" / "communes.csv"
TARIFFS = ["base", "hp_hc", "tempo"]


def _iris_codes(rng: np.random.Generator, communes: int) -> np.ndarray:
    """Plausible IRIS codes (no offline reference exists): a real commune code + 4 digits."""
    reference = pd.read_csv(REFERENCE, dtype=str)
    chosen = rng.choice(reference["code"].to_numpy(), size=communes, replace=False)
    return np.array([f"{c}{i:04d}" for c in sorted(chosen) for i in range(1, 4)])


def meters_table(rows: int, seed: int = 20251129) -> pa.Table:
    """``rows`` daily readings (meters × 365 days): meter_id, iris, tariff, date, kwh."""
    rng = np.random.default_rng(seed)
    days = 365
    meters = max(1, rows // days)
    iris = _iris_codes(rng, max(10, meters // 40))
    meter_iris = rng.integers(0, len(iris), meters)
    meter_tariff = rng.choice(len(TARIFFS), meters, p=[0.6, 0.3, 0.1])
    base = rng.lognormal(2.0, 0.5, meters) * np.where(rng.random(meters) < 0.002, 80, 1)
    meter = np.repeat(np.arange(meters), days)
    day = np.tile(np.arange(days), meters)
    season = 1 + 0.6 * np.cos(2 * np.pi * day / days)
    kwh = np.round(base[meter] * season * rng.gamma(4.0, 0.25, meters * days), 3)
    start = np.datetime64(datetime.date(2025, 1, 1), "D")
    names = pa.array([f"M{m:07d}" for m in range(meters)])
    return pa.table(
        {
            "meter_id": pa.DictionaryArray.from_arrays(pa.array(meter, pa.int32()), names),
            "iris": pa.DictionaryArray.from_arrays(
                pa.array(meter_iris[meter], pa.int32()), pa.array(iris)
            ),
            "tariff": pa.DictionaryArray.from_arrays(
                pa.array(meter_tariff[meter], pa.int32()), pa.array(TARIFFS)
            ),
            "date": pa.array(start + day.astype("timedelta64[D]")),
            "kwh": pa.array(kwh),
        }
    )


def meters_file(rows: int, seed: int = 20251129) -> Path:
    """The Parquet file of ``rows`` readings, generated once and cached."""
    path = CACHE / f"meters-{rows}-{seed}.parquet"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        temporary = path.with_suffix(".tmp")
        pq.write_table(meters_table(rows, seed), temporary, row_group_size=1_000_000)
        temporary.replace(path)
    return path

"""Microdata benchmark: optimal search on Adult (ARX's benchmark) and Mondrian on 1M records.

Run: python benchmarks/microdata.py [--rows 1000000]. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anonymization.hierarchies import load_arx_csv  # noqa: E402
from anonymization.microdata.config import MicrodataPolicy, ProtectionSpec  # noqa: E402
from anonymization.microdata.encoding import encode_table  # noqa: E402
from anonymization.microdata.lattice import optimal_search  # noqa: E402
from anonymization.microdata.release import anonymize_microdata  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.csv"
QIS = [
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
]


def adult(metric: str, suppression: float) -> None:
    """Adult, k=5, 8 QIs, salary-class sensitive: encode + optimal search, best of 3."""
    data = pd.read_csv(ADULT, sep=";", dtype=str, keep_default_na=False)
    folder = ROOT / "examples" / "hierarchies"
    hierarchies = {c: load_arx_csv(folder / f"adult_hierarchy_{c}.csv") for c in QIS}
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        table = encode_table(data, QIS, ["salary-class"], hierarchies)
        result = optimal_search(table, ProtectionSpec(k=5, suppression_limit=suppression), metric)
        timings.append(time.perf_counter() - started)
    print(
        f"adult k=5 8 QIs suppression={suppression:.0%} metric={metric}: "
        f"{min(timings):.3f} s, node {list(result.node)}, "
        f"suppressed {result.classes.suppressed}, classes {result.classes.kept_classes}, "
        f"checked {result.checked}/{result.lattice_size} nodes"
    )


def consumption(rows: int) -> pd.DataFrame:
    """Synthetic household consumption: 4 numeric quasi-identifiers, a sensitive tariff."""
    rng = np.random.default_rng(2026)
    return pd.DataFrame(
        {
            "meter": np.char.add("PDL", np.arange(rows).astype(str)),
            "surface": rng.integers(12, 250, rows).astype(str),
            "occupants": rng.integers(1, 8, rows).astype(str),
            "built": rng.integers(1900, 2025, rows).astype(str),
            "kwh": (rng.gamma(2.0, 2200.0, rows) // 10 * 10).astype(np.int64).astype(str),
            "tariff": rng.choice(["base", "peak", "tempo"], rows, p=[0.6, 0.3, 0.1]),
        }
    )


def mondrian(rows: int) -> None:
    """Mondrian, k=5, 4 numeric QIs, on ``rows`` synthetic records (whole release)."""
    data = consumption(rows)
    policy = MicrodataPolicy.model_validate(
        {
            "dataset": {"identifiers": ["meter"]},
            "release": {
                "quasi_identifiers": {q: {} for q in ("surface", "occupants", "built", "kwh")},
                "sensitive": ["tariff"],
                "algorithm": "mondrian",
                "protection": {"k": 5},
            },
        }
    )
    started = time.perf_counter()
    result = anonymize_microdata(data, policy, {}, None)
    elapsed = time.perf_counter() - started
    print(
        f"mondrian k=5 4 numeric QIs {rows} records: {elapsed:.2f} s, "
        f"{result.manifest['classes']} classes, smallest {result.manifest['measured']['k']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    arguments = parser.parse_args()
    if ADULT.exists():
        for metric in ("loss", "entropy"):
            adult(metric, 0.02)
    else:
        print(f"adult: skipped, {ADULT} not found")
    mondrian(arguments.rows)


if __name__ == "__main__":
    main()

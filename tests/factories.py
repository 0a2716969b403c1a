"""Test data factories shared by the test packages."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEPARTEMENTS = ["75", "06", "13", "2A", "971", "74", "33", "2B"]


def payments(rows: int = 4000, cards: int = 600, seed: int = 7) -> pd.DataFrame:
    """Card payments with a skewed département mix so some cells fall below k."""
    rng = np.random.default_rng(seed)
    weights = np.array([30, 20, 15, 10, 8, 8, 8, 1], dtype=float)
    start = datetime.date(2025, 1, 1)
    return pd.DataFrame(
        {
            "card_id": [f"C{n:05d}" for n in rng.integers(0, cards, rows)],
            "holder_name": ["Jane Doe"] * rows,
            "departement": rng.choice(DEPARTEMENTS, rows, p=weights / weights.sum()),
            "date": [
                (start + datetime.timedelta(days=int(d))).isoformat()
                for d in rng.integers(0, 365, rows)
            ],
            "age": rng.integers(18, 85, rows),
            "card_country": rng.choice(["DE", "GB", "US", "CN"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "amount": np.round(rng.lognormal(3.5, 1.0, rows), 2),
        }
    )


# `shared/` lies beside the checkout (as CI lays it out).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ADULT = SHARED_DATA / "adult" / "adult.csv"

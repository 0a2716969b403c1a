"""Re-identification risk of a released table, from the sizes of its equivalence classes.

Prosecutor model (the attacker knows the subject is in the release): a record's risk is
1 / its class size. Journalist and marketer models (the attacker holds a population register)
need the population class sizes; given only the population size, each is estimated as the
sample class size divided by the sampling fraction (a simple, documented estimator; ARX also
offers Pitman, Zayatz and SNB models).
"""

from __future__ import annotations

import numpy as np

from anonymization.microdata.models import Floats


def risk_report(sizes: Floats, threshold: float, population: int | None) -> dict[str, float | None]:
    """Highest and average risk, the share of records above ``threshold``, and population models."""
    sizes = sizes[sizes > 0]
    records = float(sizes.sum())
    if records == 0:
        return {
            "prosecutor_highest": 0.0,
            "prosecutor_average": 0.0,
            "records_at_risk": 0.0,
            "journalist_highest": None,
            "marketer": None,
        }
    at_risk = float(sizes[1.0 / sizes > threshold].sum()) / records
    report: dict[str, float | None] = {
        "prosecutor_highest": round(1.0 / float(sizes.min()), 6),
        "prosecutor_average": round(len(sizes) / records, 6),
        "records_at_risk": round(at_risk, 6),
        "journalist_highest": None,
        "marketer": None,
    }
    if population is not None:
        fraction = min(records / population, 1.0)
        population_sizes = np.maximum(sizes / fraction, sizes)
        report["journalist_highest"] = round(float(1.0 / population_sizes.min()), 6)
        report["marketer"] = round(float((sizes / population_sizes).sum() / records), 6)
    return report

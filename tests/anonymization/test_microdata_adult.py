"""Adult (UCI census extract): the search reproduces ARX's published optimal transformations.

Reference values are ARX's own regression tests (arx-deidentifier/arx,
TestAnonymizationKAnonymity): all nine columns as quasi-identifiers, non-uniform entropy.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anonymization.hierarchies import load_arx_csv
from anonymization.microdata.config import ProtectionSpec
from anonymization.microdata.encoding import encode_table
from anonymization.microdata.lattice import optimal_search
from tests.factories import ADULT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

COLUMNS = [
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
    "salary-class",
]

pytestmark = pytest.mark.skipif(not ADULT.exists(), reason="the Adult data is not on this machine")


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(ADULT, sep=";", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def hierarchies():
    return {c: load_arx_csv(EXAMPLES / "hierarchies" / f"adult_hierarchy_{c}.csv") for c in COLUMNS}


@pytest.mark.parametrize(
    ("k", "suppression", "node", "loss"),
    [
        (5, 0.04, (1, 0, 1, 1, 3, 2, 2, 0, 1), 255559.85455731067),
        (100, 0.04, (1, 1, 1, 1, 3, 2, 2, 1, 1), 379417.3460570988),
        (5, 0.0, (1, 2, 1, 1, 3, 2, 2, 1, 1), 407289.5388925293),
        (100, 0.0, (0, 4, 1, 1, 3, 2, 2, 1, 1), 453196.8932458743),
    ],
)
def test_arx_reference_transformations(adult, hierarchies, k, suppression, node, loss):
    table = encode_table(adult, COLUMNS, [], hierarchies)
    result = optimal_search(table, ProtectionSpec(k=k, suppression_limit=suppression), "entropy")
    assert result.node == node
    assert result.value == pytest.approx(loss, rel=1e-9)
    assert result.classes.suppressed <= suppression * len(adult)
    assert result.classes.sizes[result.classes.kept].min() >= k


def test_adult_k5_two_percent_with_sensitive_salary(adult, hierarchies):
    table = encode_table(adult, COLUMNS[:8], ["salary-class"], hierarchies)
    result = optimal_search(table, ProtectionSpec(k=5, suppression_limit=0.02), "entropy")
    assert result.classes.suppressed <= 603
    assert result.classes.sizes[result.classes.kept].min() >= 5
    assert result.checked < result.lattice_size / 4

"""The cell table: sums are numbers or the release is refused."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymization.cells import compute_cells
from anonymization.errors import DataError
from anonymization.hierarchies import CategoricalHierarchy
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import Protection

PLAN = AggregatePlan(
    subject="subject",
    dimensions=(Dimension("zone", CategoricalHierarchy("zone"), "value", "value"),),
    measures=(Measure("amount", "sum"), Measure(None, "subjects")),
    protection=Protection(k=2, dominance={"n": 1, "percent": 85, "measure": "amount"}),
    totals=True,
)


def _table(amounts: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": [f"s{i % 3}" for i in range(len(amounts))],
            "zone": [["a", "b"][i % 2] for i in range(len(amounts))],
            "amount": amounts,
        }
    )


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=False), st.sampled_from([1e308, -1e308])),
        min_size=1,
        max_size=12,
    )
)
def test_sums_are_finite_or_the_release_is_refused(amounts: list[float]) -> None:
    """Infinite values, or finite ones whose sum overflows, never reach a cell; values that no
    order of addition can overflow are released."""
    cannot_overflow = sum(abs(a) for a in amounts) < 1e308
    try:
        cells = compute_cells(_table(amounts), PLAN)
    except DataError as error:
        assert error.field == "amount"
        assert not cannot_overflow
        return
    assert all(map(math.isfinite, amounts))
    assert all(math.isfinite(v) for v in cells["amount_sum"])
    assert all(math.isfinite(v) for top in cells["amount_top"] for v in top)


def test_a_sum_that_overflows_is_refused_naming_the_measure() -> None:
    source = pa.Table.from_pandas(_table([1e308] * 6))
    with pytest.raises(DataError, match="amount") as raised:
        compute_cells(source, PLAN)
    assert raised.value.field == "amount"

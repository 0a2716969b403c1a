"""Encoding microdata columns: a value its hierarchy cannot read is named with what was expected."""

from __future__ import annotations

import pandas as pd
import pytest

from anonymization.bands import BandHierarchy
from anonymization.errors import HierarchyError
from anonymization.hierarchies import TimeHierarchy
from anonymization.microdata.encoding import encode_column


@pytest.mark.parametrize(
    ("hierarchy", "expected"),
    [
        (TimeHierarchy(), "a date (YYYY-MM-DD, or an ISO timestamp) for the time hierarchy"),
        (BandHierarchy("ages", [5, 10]), "a number for the numeric bands of hierarchy 'ages'"),
    ],
)
def test_a_value_a_hierarchy_cannot_read_names_the_column_and_what_was_expected(
    hierarchy: TimeHierarchy | BandHierarchy, expected: str
) -> None:
    values = pd.Series(["2025-01-02", "12", "soon"], name="visit")
    with pytest.raises(HierarchyError) as raised:
        encode_column("visit", values, hierarchy)
    assert raised.value.field == "visit" and raised.value.code == "malformed_value"
    assert raised.value.detail.startswith("column 'visit' holds ")
    assert expected in raised.value.detail and "as numbers" not in raised.value.detail

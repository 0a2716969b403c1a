from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymization.bands import BandHierarchy
from anonymization.errors import HierarchyError
from anonymization.hierarchies import (
    CategoricalHierarchy,
    GeoFrHierarchy,
    TableHierarchy,
    TimeHierarchy,
    load_arx_csv,
)
from tests.factories import EXAMPLES

ADULT = EXAMPLES / "hierarchies"  # ARX hierarchies of the Adult data


def test_geo_fr_keeps_codes_as_text_and_walks_the_ladder() -> None:
    geo = GeoFrHierarchy()
    assert geo.generalize_labels(["751010101", "2A0040000", "971010000"], "iris", "commune") == {
        "751010101": "75101",
        "2A0040000": "2A004",
        "971010000": "97101",
    }
    assert geo.generalize_labels(
        ["75056", "2A004", "97105", "06088"], "commune", "departement"
    ) == {"75056": "75", "2A004": "2A", "97105": "971", "06088": "06"}
    assert geo.generalize_labels(
        ["75", "2A", "2B", "971", "976", "06"], "departement", "region"
    ) == {"75": "11", "2A": "94", "2B": "94", "971": "01", "976": "06", "06": "93"}
    assert geo.generalize_labels(["75"], "departement", "*") == {"75": "*"}


@pytest.mark.parametrize("bad", ["7", "20", "96", "977", "ABC", "750"])
def test_geo_fr_names_the_value_it_does_not_cover(bad: str) -> None:
    with pytest.raises(HierarchyError, match=repr(bad)):
        GeoFrHierarchy().generalize_labels([bad, "75"], "departement", "region")


def test_geo_fr_refuses_a_finer_level_than_stored() -> None:
    with pytest.raises(HierarchyError, match="finer"):
        GeoFrHierarchy().generalize_labels(["75"], "departement", "commune")


def test_arx_hierarchy_from_the_adult_data() -> None:
    age = load_arx_csv(ADULT / "adult_hierarchy_age.csv", "age")
    assert age.levels[0] == "value" and len(age.levels) >= 3
    assert age.generalize(["1", "39"], "level1") == {"1": "0-4", "39": "35-39"}
    assert age.generalize(["39"], "*") == {"39": "*"}
    with pytest.raises(HierarchyError, match="'200'"):
        age.generalize(["200"], "level1")


def test_named_levels_and_malformed_tables() -> None:
    table = TableHierarchy("t", [["a", "x", "*"], ["b", "x", "*"]], levels=["value", "group"])
    assert table.generalize(["a", "b"], "group") == {"a": "x", "b": "x"}
    with pytest.raises(HierarchyError, match="two parents"):
        TableHierarchy("t", [["a", "x"], ["a", "y"]])
    with pytest.raises(HierarchyError, match="columns"):
        TableHierarchy("t", [["a", "x"], ["b"]])
    with pytest.raises(HierarchyError, match="unknown level"):
        table.index("nope")


def test_missing_hierarchy_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match="cannot read"):
        load_arx_csv(tmp_path / "none.csv")


def test_time_levels_in_sql_and_in_labels() -> None:
    time = TimeHierarchy()
    con = duckdb.connect()
    row = con.execute(
        "SELECT "
        + ", ".join(time.expression("TIMESTAMP '2025-06-14 10:00'", level) for level in time.levels)
    ).fetchone()
    assert row == ("2025-06-14", "2025-W24", "2025-06", "2025-Q2", "2025")
    assert time.generalize_labels(["2025-06-14"], "day", "week") == {"2025-06-14": "2025-W24"}
    assert time.generalize_labels(["2025-11"], "month", "quarter") == {"2025-11": "2025-Q4"}
    with pytest.raises(HierarchyError, match="weeks"):
        time.generalize_labels(["2025-W01"], "week", "month")


def test_bands_nest_and_label_half_open() -> None:
    bands = BandHierarchy("age", [5, 10, 20])
    con = duckdb.connect()
    assert con.execute(f"SELECT {bands.expression('37.0', 'band5')}").fetchone() == ("[35,40)",)
    assert bands.generalize_labels(["[35,40)"], "band5", "band20") == {"[35,40)": "[20,40)"}
    with pytest.raises(HierarchyError, match="multiple"):
        BandHierarchy("bad", [10, 25])


def test_categorical_is_identity_then_top() -> None:
    country = CategoricalHierarchy("country")
    assert country.generalize(["DE"], "value") == {"DE": "DE"}
    assert country.generalize(["DE"], "*") == {"DE": "*"}


@pytest.mark.parametrize(
    ("code", "level"),
    [("99999", "commune"), ("75999", "commune"), ("999990001", "iris"), ("12", "region")],
)
def test_geo_fr_checks_codes_against_the_insee_reference(code: str, level: str) -> None:
    with pytest.raises(HierarchyError, match=repr(code)):
        GeoFrHierarchy().generalize_labels([code], level, "*")


@pytest.mark.parametrize(
    ("hierarchy", "column", "values"),
    [
        (
            TimeHierarchy(),
            "when",
            ["2024-12-30", "2025-01-01 23:59", "2025-03-31", "2025-06-14 10:00", "2026-01-04"],
        ),
        (BandHierarchy("age", [5, 10, 20]), "age", [0.0, 4.99, 5.0, 37.5, -3.0, 119.0]),
        (BandHierarchy("kwh", [0.5, 1.5]), "kwh", [0.0, 0.49, 0.5, 1.74, -0.2]),
    ],
)
def test_engine_groups_on_keys_and_labels_like_the_row_expression(
    hierarchy: TimeHierarchy | BandHierarchy, column: str, values: list[object]
) -> None:
    """The scan groups on a cheap key and labels it afterwards: the labels are those the
    row-wise expression gives, at every level."""
    import pandas as pd

    from anonymization.cells import compute_cells
    from anonymization.plan import AggregatePlan, Dimension, Measure
    from anonymization.protection import Protection

    table = pd.DataFrame({"who": [f"s{i}" for i in range(len(values))], column: values})
    con = duckdb.connect()
    con.register("t", table)
    for level in (*hierarchy.levels, "*"):
        typed = f'CAST("{column}" AS {hierarchy.sql_type})'
        expected = sorted(
            row[0]
            for row in con.execute(
                f"SELECT DISTINCT {hierarchy.expression(typed, level)} FROM t"
            ).fetchall()
        )
        plan = AggregatePlan(
            subject="who",
            dimensions=(Dimension(column, hierarchy, hierarchy.levels[0], level),),
            measures=(Measure(None, "subjects"),),
            protection=Protection(k=2),
        )
        assert sorted(compute_cells(table, plan)[column]) == expected, level


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_subnormal=True), min_size=1, max_size=4))
def test_bands_are_refused_or_label_every_level(widths: list[float]) -> None:
    """Any widths (infinite, huge, tiny, subnormal) give a typed error or a hierarchy whose
    every level labels a value."""
    try:
        bands = BandHierarchy("b", widths)
    except HierarchyError:
        return
    con = duckdb.connect()
    for level in bands.levels:
        assert con.execute(f"SELECT {bands.expression('37.5', level)}").fetchone() is not None
        bands.generalize_labels(["37.5"], "value", level)

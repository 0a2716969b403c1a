"""The cell table: sums are numbers or the release is refused."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymization.cells import compute_cells, differing_subjects
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


def test_the_engine_spills_to_a_private_folder_it_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its memory limit DuckDB writes rows of the source to disk (decrypted ones, in the
    service): by default to ``.tmp`` in the working directory, kept after the run. Every engine
    connection spills instead to a folder of its own, mode 0700, removed once it closes."""
    seen: list[tuple[str, int]] = []
    real = duckdb.connect

    def watched(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        con = real(*args, **kwargs)
        row = con.execute("SELECT current_setting('temp_directory')").fetchone()
        assert row is not None
        folder = Path(row[0])
        seen.append((str(folder), folder.stat().st_mode & 0o777 if folder.exists() else -1))
        return con

    monkeypatch.setattr(duckdb, "connect", watched)
    monkeypatch.chdir(tmp_path)
    compute_cells(_table([1.0, 2.0, 3.0, 4.0]), PLAN)
    differing_subjects(_table([1.0, 2.0, 3.0, 4.0]), PLAN, PLAN.filters)
    assert len(seen) == 2
    for folder, mode in seen:
        assert mode == 0o700, f"{folder} is not a private folder"
        assert not Path(folder).exists()
    assert not (tmp_path / ".tmp").exists()

"""Reviewer attacks on zoned timestamps: names quoted into SQL, lying Arrow metadata."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anonymization.errors import DataError
from tests.anonymization.test_time_zones import _cells, _frame


def _write(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Paris', col) AS x, 1 AS y FROM src_stored; --",
        "Europe/Paris'); DROP VIEW src_stored; --",
        "UTC\\'",
        "x\u0000y",
    ],
)
def test_a_zone_name_that_tries_to_inject_sql_is_an_unknown_zone(tmp_path, zone):
    table = pa.Table.from_pandas(_frame("UTC"), preserve_index=False)
    index = table.schema.get_field_index("paid_at")
    try:
        kind = pa.timestamp("us", tz=zone)
        table = table.set_column(index, "paid_at", table["paid_at"].cast(kind))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pytest.skip("arrow refuses this zone")
    with pytest.raises(DataError) as raised:
        _cells(table, "month")
    assert raised.value.field == "paid_at"


def test_a_column_name_with_quotes_is_quoted(tmp_path):
    frame = _frame().rename(columns={"paid_at": "pa\"id'at"})
    from anonymization.cells import compute_cells
    from tests.anonymization.test_time_zones import _plan

    plan = _plan("month")
    from dataclasses import replace

    dimension = replace(plan.dimensions[0], column="pa\"id'at")
    cells = compute_cells(frame, replace(plan, dimensions=(dimension,)))
    assert dict(zip(cells["pa\"id'at"], cells["subjects"], strict=True)) == {
        "2024-12": 5,
        "2025-01": 5,
        "2025-07": 5,
    }


def test_parquet_whose_arrow_metadata_lies_is_read_at_utc_or_refused_never_a_crash(tmp_path):
    table = pa.Table.from_pandas(_frame(), preserve_index=False)
    # An Arrow schema (ARROW:schema metadata) naming other columns than the Parquet file holds.
    lying = pa.schema([pa.field("other", pa.timestamp("us", tz="Asia/Tokyo"))])
    import base64

    serialized = base64.b64encode(lying.serialize().to_pybytes())
    table = table.replace_schema_metadata({b"ARROW:schema": serialized})
    path = tmp_path / "lying.parquet"
    pq.write_table(table, path, store_schema=False)
    meta = pq.read_metadata(path).metadata
    # write it again with the lying key kept in the footer
    pq.write_table(
        table.replace_schema_metadata({**(meta or {}), b"ARROW:schema": serialized}),
        path,
        store_schema=False,
    )
    try:
        result = _cells(path, "month")
    except DataError:
        return
    # No Arrow schema DuckDB and pyarrow agree on: the instants are read at their UTC clock
    # time, as README documents for a Parquet file without one.
    assert result == {"2024-12": 10, "2025-06": 5}

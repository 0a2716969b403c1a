"""Zoned timestamps are grouped and filtered by their clock time in their own zone, whatever
the machine's time zone: a Paris payment at 00:30 on 1 January is in January."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anonymization.cells import compute_cells
from anonymization.errors import DataError
from anonymization.hierarchies import TimeHierarchy
from anonymization.plan import AggregatePlan, Dimension, Filter, Measure
from anonymization.protection import Protection
from anonymization.source import Source

# Paris clock times, each paid by five cards: just before and just after midnight, in winter
# (+01:00) and in summer (+02:00).
CLOCK_TIMES = ["2024-12-31 23:30", "2025-01-01 00:30", "2025-07-01 00:30"]
TIME = TimeHierarchy()


def _frame(zone: str | None = "Europe/Paris") -> pd.DataFrame:
    times = pd.to_datetime([t for t in CLOCK_TIMES for _ in range(5)])
    return pd.DataFrame(
        {
            "card": [f"c{i}" for i in range(len(times))],
            "paid_at": times.tz_localize(zone) if zone else times,
            "amount": 1.0,
        }
    )


def _plan(level: str, *filters: Filter) -> AggregatePlan:
    return AggregatePlan(
        subject="card",
        dimensions=(Dimension("paid_at", TIME, "day", level),),
        measures=(Measure(None, "subjects"),),
        protection=Protection(k=2),
        filters=filters,
    )


def _cells(source: Source, level: str, *filters: Filter) -> dict[str, int]:
    cells = compute_cells(source, _plan(level, *filters))
    return dict(zip(cells["paid_at"], cells["subjects"], strict=True))


def _parquet(tmp_path: Path, frame: pd.DataFrame, arrow_zone: str | None = None) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if arrow_zone is not None:
        field = table.schema.get_field_index("paid_at")
        table = table.set_column(
            field, "paid_at", table["paid_at"].cast(pa.timestamp("us", tz=arrow_zone))
        )
    path = tmp_path / "payments.parquet"
    pq.write_table(table, path)
    return path


MONTHS = {"2024-12": 5, "2025-01": 5, "2025-07": 5}
DAYS = {"2024-12-31": 5, "2025-01-01": 5, "2025-07-01": 5}


@pytest.mark.usefixtures("machine_zone")
@pytest.mark.parametrize("kind", ["arrow", "pandas", "parquet"])
def test_a_zoned_time_is_grouped_by_its_clock_time_in_its_zone(kind: str, tmp_path: Path) -> None:
    frame = _frame()
    source: Source = {
        "arrow": lambda: pa.Table.from_pandas(frame, preserve_index=False),
        "pandas": lambda: frame,
        "parquet": lambda: _parquet(tmp_path, frame),
    }[kind]()
    assert _cells(source, "month") == MONTHS
    assert _cells(source, "day") == DAYS
    assert _cells(source, "year") == {"2024": 5, "2025": 10}


@pytest.mark.usefixtures("machine_zone")
def test_a_fixed_offset_zone_is_read_at_its_clock_time(tmp_path: Path) -> None:
    """Arrow names a fixed offset ``+01:00``, which ICU does not: it is read as GMT+01:00."""
    winter = _frame()[:10]
    source = _parquet(tmp_path, winter, arrow_zone="+01:00")
    assert pq.read_schema(source).field("paid_at").type.tz == "+01:00"
    assert _cells(source, "day") == {"2024-12-31": 5, "2025-01-01": 5}


@pytest.mark.usefixtures("machine_zone")
def test_a_time_range_filter_reads_the_same_clock_time() -> None:
    """``from``/``to`` are days of the column's clock: 1 January keeps the payments at 00:30 in
    Paris, and neither the one at 23:30 the day before nor a summer one."""
    source = pa.Table.from_pandas(_frame(), preserve_index=False)
    first = Filter("paid_at", TIME, "day", "day", low="2025-01-01", high="2025-01-01")
    assert _cells(source, "day", first) == {"2025-01-01": 5}
    december = Filter("paid_at", TIME, "day", "day", low="2024-12-01", high="2024-12-31")
    assert _cells(source, "month", december) == {"2024-12": 5}


@pytest.mark.usefixtures("machine_zone")
def test_naive_times_and_offsets_in_csv_text_keep_their_clock_time(tmp_path: Path) -> None:
    """A naive timestamp is its own clock time; a CSV value with an offset is read at the clock
    time it is written in (the offset is not applied), as the service's checks read it."""
    naive = _frame(zone=None)
    assert _cells(pa.Table.from_pandas(naive, preserve_index=False), "month") == MONTHS
    assert _cells(_parquet(tmp_path, naive), "month") == MONTHS
    written = _frame().assign(paid_at=lambda f: f["paid_at"].map(pd.Timestamp.isoformat))
    assert written["paid_at"][5] == "2025-01-01T00:30:00+01:00"
    path = tmp_path / "payments.csv"
    written.to_csv(path, index=False)
    assert _cells(path, "month") == MONTHS
    assert _cells(pa.Table.from_pandas(written, preserve_index=False), "day") == DAYS


def test_a_time_zone_the_engine_does_not_know_is_refused_naming_the_column() -> None:
    times = pa.array([0, 1], pa.timestamp("us", tz="Mars/Olympus_Mons"))
    source = pa.table({"card": ["a", "b"], "paid_at": times, "amount": [1.0, 1.0]})
    with pytest.raises(DataError, match="Mars/Olympus_Mons") as raised:
        compute_cells(source, _plan("month"))
    assert raised.value.field == "paid_at"

"""The data a release is computed from, exposed to DuckDB as the view ``src``: a file (Parquet,
or CSV read with the policy's column types) or an in-memory table, its columns checked against
the plan, and the engine's errors about it turned into DataError naming ``data``.

Times are read at their clock time, whatever the machine's time zone: a timestamp stored with a
zone (an Arrow or Parquet ``timestamp[us, tz=Europe/Paris]``) as the clock time in that zone, a
CSV value with an offset (``2025-01-01T00:30:00+01:00``) as the clock time it is written in."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, Union

import duckdb

from anonymization.errors import DataError
from anonymization.hierarchies import MappingHierarchy, TimeHierarchy
from anonymization.plan import AggregatePlan, Dimension, Filter

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Source: TypeAlias = Union[str, Path, "pd.DataFrame", "pa.Table"]

ZONED = "TIMESTAMP WITH TIME ZONE"
# A fixed offset as Arrow names it (``+01:00``); ICU knows it as ``GMT+01:00``.
FIXED_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection whose spill files (what exceeds its memory limit: rows of the source,
    decrypted ones in the service) go to a private temporary folder (mode 0700) removed on
    close, not to DuckDB's default ``.tmp`` in the working directory, which outlives the run.
    Its session time zone is UTC, not the machine's, so no result depends on where it runs."""
    scratch = tempfile.mkdtemp(prefix="partage-engine-")
    try:
        con = duckdb.connect(config={"temp_directory": scratch})
        try:
            con.execute("SET enable_progress_bar = false")
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def quote(name: str) -> str:
    """A SQL identifier for a column name, quoted so that any name is safe."""
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def engine_errors() -> Iterator[None]:
    """DuckDB's errors reading or binding the data, as DataError naming ``data``."""
    try:
        yield
    except duckdb.IOException as error:
        raise DataError(f"cannot read the data: {_first_line(error)}", field="data") from None
    except (duckdb.InvalidInputException, duckdb.ConversionException) as error:
        raise DataError(f"the data does not parse: {_first_line(error)}", field="data") from None
    except duckdb.BinderException as error:
        raise DataError(
            f"the data does not match the policy: {_first_line(error)}", field="data"
        ) from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def _source_types(plan: AggregatePlan) -> dict[str, str]:
    """Declared column types: codes stay text (``06``, ``2A``), measures are numbers, times are
    timestamps read at the clock time they are written in (an offset is not applied)."""
    types = {plan.subject: "VARCHAR"}
    items: list[Dimension | Filter] = [*plan.dimensions, *plan.filters]
    for item in items:
        if isinstance(item.hierarchy, MappingHierarchy):
            types[item.column] = "VARCHAR"
        elif isinstance(item.hierarchy, TimeHierarchy):
            types[item.column] = "TIMESTAMP"
    types.update(dict.fromkeys(plan.summed, "DOUBLE"))
    types.update(plan.column_types)
    return types


def open_source(con: duckdb.DuckDBPyConnection, source: Source, plan: AggregatePlan) -> None:
    """Expose the source as the view ``src``, checking that every column the plan reads exists."""
    needed = {
        plan.subject,
        *plan.summed,
        *(d.column for d in plan.dimensions),
        *(f.column for f in plan.filters),
    }
    with engine_errors():
        if not isinstance(source, str | Path):
            con.register("src_table", source)
            con.execute("CREATE VIEW src_stored AS SELECT * FROM src_table")
        else:
            path = Path(source)
            if not path.is_file():
                raise DataError(f"no such file: {path}", field="data")
            reader = "read_parquet(?)" if path.suffix.lower() in {".parquet", ".pq"} else None
            if reader is None:
                try:
                    header = con.execute(
                        "SELECT * FROM read_csv(?, header = true) LIMIT 0", [str(path)]
                    )
                except duckdb.Error:
                    with path.open(encoding="utf-8", errors="replace") as handle:
                        _misshapen_csv(path, handle.readline().rstrip("\r\n"))
                    raise
                present = {column[0] for column in header.description or []}
                types = {k: v for k, v in _source_types(plan).items() if k in present}
                con.execute(
                    f"CREATE VIEW src_stored AS SELECT * FROM read_csv('{_literal(path)}', "
                    f"header = true, types = {_struct(types)})"
                )
            else:
                con.execute(
                    f"CREATE VIEW src_stored AS SELECT * FROM read_parquet('{_literal(path)}')"
                )
        stored = con.execute("DESCRIBE src_stored").fetchall()
        columns = {row[0] for row in stored}
        zoned = [row[0] for row in stored if row[1] == ZONED]
        con.execute(f"CREATE VIEW src AS {_clock_times(con, source, zoned)}")
    missing = sorted(needed - columns)
    if missing and isinstance(source, str | Path) and len(columns) == 1:
        # DuckDB's sniffer reads a file with a malformed line as one column named after the
        # whole header line: say what is wrong with the file, not that a column is missing.
        _misshapen_csv(Path(source), next(iter(columns)))
    if missing:
        raise DataError(f"column {missing[0]!r} is not in the data", field=missing[0])


def _clock_times(con: duckdb.DuckDBPyConnection, source: Source, zoned: list[str]) -> str:
    """The query of ``src``: the stored columns, each zoned timestamp replaced by its clock time
    in its own zone. A zone the source does not record (a CSV value's offset, which DuckDB
    drops; a Parquet file without an Arrow schema) is UTC, the session's zone."""
    zones = _zones(source, zoned) if zoned else {}
    clocks = [
        f"timezone('{_icu_zone(con, column, zone)}', {quote(column)}) AS {quote(column)}"
        for column, zone in zones.items()
    ]
    replaced = f" REPLACE ({', '.join(clocks)})" if clocks else ""
    return f"SELECT *{replaced} FROM src_stored"


def _zones(source: Source, zoned: list[str]) -> dict[str, str]:
    """The time zone that each of the ``zoned`` columns' Arrow type names, where there is one."""
    import pyarrow as pa

    if isinstance(source, str | Path):
        if Path(source).suffix.lower() not in {".parquet", ".pq"}:
            return {}
        import pyarrow.parquet as pq

        schema = pq.read_schema(source)
        types = {column: schema.field(column).type for column in zoned}
    elif isinstance(source, pa.Table):
        types = {column: source.schema.field(column).type for column in zoned}
    else:
        types = {column: pa.Array.from_pandas(source[column].iloc[:0]).type for column in zoned}
    return {
        column: kind.tz
        for column, kind in types.items()
        if pa.types.is_timestamp(kind) and kind.tz is not None
    }


def _icu_zone(con: duckdb.DuckDBPyConnection, column: str, zone: str) -> str:
    """``zone`` as a literal DuckDB's ``timezone()`` reads, checked: an unknown zone is a
    DataError naming the column."""
    fixed = FIXED_OFFSET.fullmatch(zone)
    name = f"GMT{fixed[1]}{fixed[2]}:{fixed[3]}" if fixed else zone
    try:
        con.execute("SELECT timezone(?, TIMESTAMPTZ '2000-01-01 00:00:00+00')", [name])
    except duckdb.Error:
        raise DataError(
            f"column {column!r} is stored in the time zone {zone!r}, which the engine does not "
            "know: store its times in a known zone (such as Europe/Paris) or as clock times",
            field=column,
        ) from None
    return name.replace("'", "''")


def _misshapen_csv(path: Path, header: str) -> None:
    """Raise DataError naming the first line of ``path`` whose field count is not the
    header's, when the header holds several comma-separated fields (else return)."""
    import csv

    width = len(next(csv.reader([header])))
    if width < 2:
        return
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        try:
            for number, row in enumerate(csv.reader(handle), start=1):
                if number > 1 and len(row) != width:
                    raise DataError(
                        f"{path.name}: line {number} has {len(row)} fields, the header {width}",
                        field="data",
                    )
        except csv.Error as error:
            raise DataError(f"{path.name} does not parse as CSV: {error}", field="data") from None


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


def _struct(types: dict[str, str]) -> str:
    body = ", ".join(
        f"'{name.replace(chr(39), chr(39) * 2)}': '{kind}'" for name, kind in types.items()
    )
    return "{" + body + "}"

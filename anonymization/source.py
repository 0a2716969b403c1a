"""The data a release is computed from, exposed to DuckDB as the view ``src``: a file (Parquet,
or CSV read with the policy's column types) or an in-memory table, its columns checked against
the plan, and the engine's errors about it turned into DataError naming ``data``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, Union

import duckdb

from anonymization.errors import DataError
from anonymization.hierarchies import MappingHierarchy
from anonymization.plan import AggregatePlan, Dimension, Filter

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Source: TypeAlias = Union[str, Path, "pd.DataFrame", "pa.Table"]


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection whose spill files (what exceeds its memory limit: rows of the source,
    decrypted ones in the service) go to a private temporary folder (mode 0700) removed on
    close, not to DuckDB's default ``.tmp`` in the working directory, which outlives the run."""
    scratch = tempfile.mkdtemp(prefix="partage-engine-")
    try:
        con = duckdb.connect(config={"temp_directory": scratch})
        try:
            con.execute("SET enable_progress_bar = false")
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
    """Declared column types: codes stay text (``06``, ``2A``), measures are numbers."""
    types = {plan.subject: "VARCHAR"}
    items: list[Dimension | Filter] = [*plan.dimensions, *plan.filters]
    for item in items:
        if isinstance(item.hierarchy, MappingHierarchy):
            types[item.column] = "VARCHAR"
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
            con.execute("CREATE VIEW src AS SELECT * FROM src_table")
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
                    f"CREATE VIEW src AS SELECT * FROM read_csv('{_literal(path)}', "
                    f"header = true, types = {_struct(types)})"
                )
            else:
                con.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet('{_literal(path)}')")
        columns = {row[0] for row in con.execute("DESCRIBE src").fetchall()}
    missing = sorted(needed - columns)
    if missing and isinstance(source, str | Path) and len(columns) == 1:
        # DuckDB's sniffer reads a file with a malformed line as one column named after the
        # whole header line: say what is wrong with the file, not that a column is missing.
        _misshapen_csv(Path(source), next(iter(columns)))
    if missing:
        raise DataError(f"column {missing[0]!r} is not in the data", field=missing[0])


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

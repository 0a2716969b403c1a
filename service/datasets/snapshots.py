"""Snapshots of SQL tables (``POST /datasets/sql``): the table read once, as Parquet bytes, then
checked and stored like an uploaded file."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    Engine,
    Float,
    MetaData,
    Numeric,
    Table,
    create_engine,
    func,
    literal_column,
    make_url,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import DOMAIN
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.types import TypeEngine

from anonymization.errors import DataError, InvalidRequest


def read_sql_table(url: str, table: str) -> bytes:
    """A snapshot of ``table`` at ``url`` as Parquet bytes (the connection is not kept)."""
    try:
        parsed = make_url(url)
        # Reading must never create an empty SQLite file as a side effect.
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            raise InvalidRequest("no such SQLite database file", field="source.url")
        engine = create_engine(parsed)
    except (ArgumentError, ImportError, ValueError) as error:
        raise InvalidRequest(f"not a usable database URL: {error}", field="source.url") from None
    schema, _, name = table.rpartition(".")
    try:
        frame = pd.read_sql_table(name, engine, schema=schema or None)
        _refuse_nan(engine, name, schema or None)
    except ValueError as error:  # pandas: table not found
        raise InvalidRequest(str(error), field="source.table", code="unknown_table") from None
    except SQLAlchemyError as error:
        detail = str(error.orig if isinstance(error, DBAPIError) else error).splitlines()[0]
        raise DataError(f"cannot read the table: {detail}", field="source.url") from None
    finally:
        engine.dispose()
    if frame.empty:
        raise DataError(
            f"the table {table} has no rows: there is nothing to release",
            field="source.table",
            code="no_rows",
        )
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except pa.ArrowException:
        raise _unstorable_column(frame) from None
    return buffer.getvalue()


def _refuse_nan(engine: Engine, name: str, schema: str | None) -> None:
    """Refuse a table with NaN in a floating-point or numeric column: PostgreSQL keeps NaN apart
    from NULL, but the snapshot (pandas) reads both as missing, so a NaN measure would become
    an absent value without a word (a file's NaN is refused by the checks)."""
    if engine.dialect.name != "postgresql":
        return  # SQLite stores a NaN as NULL
    table = Table(name, MetaData(), schema=schema, autoload_with=engine)
    numeric = [c for c in table.columns if isinstance(_base_type(c.type), Float | Numeric)]
    if not numeric:
        return
    # One scan of the table counts every column's NaN.
    nan = literal_column("'NaN'", Float())
    counts = select(
        *(func.count().filter(type_coerce(c, _base_type(c.type)) == nan) for c in numeric)
    )
    with engine.connect() as connection:
        found = connection.execute(counts.select_from(table)).one()
    for column, count in zip(numeric, found, strict=True):
        if count:
            raise DataError(
                f"column {column.name!r} holds {count} NaN value(s), which a snapshot cannot "
                "tell from missing ones: read the table through a view that maps them to NULL "
                "or to numbers",
                field="source.table",
            )


def _base_type(declared: TypeEngine[object]) -> TypeEngine[object]:
    """The type a PostgreSQL domain (``CREATE DOMAIN measure AS float8``), or a domain over a
    domain, is built on: its values are that type's, NaN included."""
    while isinstance(declared, DOMAIN):
        declared = declared.data_type
    return declared


def _unstorable_column(frame: pd.DataFrame) -> DataError:
    """The error naming the first column of a SQL snapshot whose values Parquet cannot hold
    (PostgreSQL ranges, network addresses: types the driver returns as Python objects)."""
    for name in frame.columns:
        try:
            pa.Array.from_pandas(frame[name])
        except pa.ArrowException:
            values = frame[name].dropna()
            found = type(values.iloc[0]).__name__ if len(values) else "unknown"
            return DataError(
                f"column {name!r} holds values of a type a snapshot cannot store ({found}); "
                "read the table through a view that casts it to text",
                field="source.table",
                code="invalid_type",
            )
    return DataError("the table cannot be stored as a snapshot", field="source.table")

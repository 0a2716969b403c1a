"""Reading an uploaded table (CSV or Parquet) with codes kept as text, and checking it against
its ``dataset`` block: roles name real columns, values parse, hierarchies cover every value.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from anonymization.bands import BandHierarchy
from anonymization.errors import DataError, HierarchyError, InvalidRequest, PartageError
from anonymization.hierarchies import (
    CategoricalHierarchy,
    Hierarchy,
    MappingHierarchy,
    TimeHierarchy,
)
from policies.models import Policy, load_hierarchies
from service.datasets.schemas import DatasetPolicy

PARQUET_MAGIC = b"PAR1"
SHOWN = 10
# The UTC offset ending an ISO timestamp (``...T10:00:00+02:00``, ``...Z``).
UTC_OFFSET = r"[T ]\d{2}:\d{2}.*?(Z|[+-]\d{2}(?::?\d{2})?)$"


def detect_format(filename: str | None, content: bytes) -> str:
    if content[:4] == PARQUET_MAGIC or (filename or "").lower().endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def read_table(content: bytes, file_format: str) -> pd.DataFrame:
    """The table, every column as text (codes like ``06`` or ``2A`` stay intact; a timestamp
    stored with a zone as its clock time in that zone)."""
    if not content:
        raise DataError("the file is empty", field="file")
    try:
        if file_format == "parquet":
            _refuse_repeated(pq.read_schema(io.BytesIO(content)).names)
            return _clock_times(pd.read_parquet(io.BytesIO(content))).astype("string")
        _refuse_repeated(_csv_header(content))
        frame = pd.read_csv(
            io.BytesIO(content), dtype="string", keep_default_na=False, na_values=[""]
        )
    except UnicodeDecodeError as error:
        raise DataError(f"the file is not UTF-8 text (byte {error.start})", field="file") from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        # pandas names the line in its message ("Expected 3 fields in line 5, saw 4").
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(
            f"the file does not parse as {file_format}: {detail}", field="file"
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas takes a first line with more fields than the header for an index column,
        # which would shift every value one column to the right.
        fields = len(frame.columns) + frame.index.nlevels
        raise DataError(
            f"the file does not parse as csv: line 2 has {fields} fields, "
            f"the header {len(frame.columns)}",
            field="file",
        )
    return frame


def _clock_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps stored with a zone as their clock time in that zone, as the engine groups them:
    as text they would carry an offset that changes with daylight saving time (``+01:00`` in
    winter, ``+02:00`` in summer), which the checks take for a second time zone."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_localize(None)
    return frame


def _csv_header(content: bytes) -> list[str]:
    line = content.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    return next(csv.reader([line]), [])


def _refuse_repeated(names: list[str]) -> None:
    """Refuse a header naming a column twice: the policy's roles could not tell the two apart
    (pandas would rename the second ``d.1``, the engine read either)."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(
            f"column name(s) {repeated} appear more than once in the header; give each column "
            "its own name",
            field="file",
            code="duplicate_column",
        )


def resolve_hierarchies(policy: DatasetPolicy, files: dict[str, str]) -> dict[str, Hierarchy]:
    """Every column's hierarchy; ARX files come from the uploaded ``files`` (name → text)."""
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            target = (Path(folder) / name).resolve()
            if not target.is_relative_to(Path(folder).resolve()):
                raise InvalidRequest(
                    f"hierarchy file {name!r} must be a relative path", field="hierarchies"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            # load_hierarchies reads only `dataset` and `hierarchies`, which DatasetPolicy has.
            return load_hierarchies(cast(Policy, policy), Path(folder))
        except PartageError as error:
            error.field = error.field or "hierarchies"
            raise


def _lines(mask: pd.Series) -> str:
    # Line 1 is the header, so row i of the frame is line i + 2 of a CSV file.
    lines = [str(index + 2) for index in mask[mask].index[:SHOWN]]
    more = f" and {int(mask.sum()) - SHOWN} more" if int(mask.sum()) > SHOWN else ""
    return ", ".join(lines) + more


def _require_columns(frame: pd.DataFrame, policy: DatasetPolicy) -> None:
    spec = policy.dataset
    named = [
        ("dataset.subject", spec.subject),
        *((f"dataset.identifiers.{i}", name) for i, name in enumerate(spec.identifiers)),
        *((f"dataset.columns.{name}", name) for name in spec.columns),
    ]
    for field, column in named:
        if column not in frame.columns:
            available = ", ".join(map(str, frame.columns))
            raise InvalidRequest(
                f"column {column!r} is not in the file (columns: {available})",
                field=field,
                code="unknown_column",
            )


def _check_values(frame: pd.DataFrame, column: str, hierarchy: Hierarchy | None, role: str) -> str:
    """Check a column's values; return its stored type (text, number, date)."""
    field = f"dataset.columns.{column}"
    values = frame[column]
    if role == "measure" or isinstance(hierarchy, BandHierarchy):
        parsed: pd.Series = pd.to_numeric(values, errors="coerce")
        # `inf` and `1e400` parse, as infinity: no sum or band of it is a number.
        bad = (parsed.isna() | parsed.isin([math.inf, -math.inf])) & values.notna()
        kind, wanted = "number", "finite number"
    elif isinstance(hierarchy, TimeHierarchy):
        bad = _parse_times(values, field).isna() & values.notna()
        kind = wanted = "date"
    else:
        return "number" if _plain_numbers(values, hierarchy) else "text"
    if bad.any():
        shown = sorted(set(values[bad].astype(str)))[:SHOWN]
        raise DataError(
            f"values that are not a {wanted}: {shown} (lines {_lines(bad)})", field=field
        )
    return kind


def check_stored_types(content: bytes, file_format: str, policy: DatasetPolicy) -> None:
    """Refuse a Parquet file whose named columns are nested, or whose measures are not stored
    as numbers: the engine reads them as stored (a CSV's measures are read as numbers, and
    checked by :func:`check_table`)."""
    if file_format != "parquet":
        return
    schema = pq.read_schema(io.BytesIO(content))
    _refuse_nested(schema, policy)
    for column, spec in policy.dataset.columns.items():
        if spec.role != "measure" or column not in schema.names:
            continue
        field = f"dataset.columns.{column}"
        stored = schema.field(column).type
        if not (pa.types.is_integer(stored) or pa.types.is_floating(stored)) and not (
            pa.types.is_decimal(stored)
        ):
            raise DataError(
                f"measure {column!r} is stored as {stored}; a measure must be stored as "
                "numbers (integers, decimals or floating point)",
                field=field,
                code="invalid_type",
            )
        if pa.types.is_floating(stored):
            # pandas reads a stored NaN as missing, so check_table cannot see it.
            values = pq.read_table(io.BytesIO(content), columns=[column]).column(column)
            bad = pc.sum(pc.invert(pc.is_finite(values))).as_py()
            if bad:
                raise DataError(f"{bad} value(s) that are NaN or infinite", field=field)


def _refuse_nested(schema: pa.Schema, policy: DatasetPolicy) -> None:
    """Refuse a subject or column stored as a list, struct or map: checked and counted as its
    text, it would be grouped by the engine as the nested value itself."""
    named = [("dataset.subject", policy.dataset.subject)]
    named += [(f"dataset.columns.{column}", column) for column in policy.dataset.columns]
    for field, column in named:
        if column in schema.names and pa.types.is_nested(schema.field(column).type):
            raise DataError(
                f"column {column!r} is stored as {schema.field(column).type}; a column the "
                "policy names must hold one value per row (text, numbers or times)",
                field=field,
                code="invalid_type",
            )


def _plain_numbers(values: pd.Series, hierarchy: Hierarchy | None) -> bool:
    """Whether a column without a hierarchy of its own holds finite numbers only (Mondrian
    splits such a quasi-identifier as numbers)."""
    if type(hierarchy) is not CategoricalHierarchy or not values.notna().any():
        return False
    parsed = pd.to_numeric(values, errors="coerce")
    return not ((parsed.isna() | parsed.isin([math.inf, -math.inf])) & values.notna()).any()


def _parse_times(values: pd.Series, field: str) -> pd.Series:
    try:
        return pd.to_datetime(values, errors="coerce", format="ISO8601")
    except ValueError:
        # pandas refuses values in several time zones (naive and aware, or two offsets).
        offsets = values.str.extract(UTC_OFFSET, expand=False).fillna("none")[values.notna()]
        first = offsets.drop_duplicates().sort_values()
        rows = first.index.to_list()
        shown = ", ".join(f"{zone} (line {row + 2})" for zone, row in zip(first, rows, strict=True))
        raise DataError(
            f"times in more than one time zone: {shown}; the engine groups times by their "
            "clock time, so give every value in one time zone, or none",
            field=field,
        ) from None


def _check_coverage(frame: pd.DataFrame, column: str, hierarchy: Hierarchy, level: str) -> None:
    distinct: Iterable[Any] = frame[column].dropna().unique()
    try:
        hierarchy.generalize_labels([str(v) for v in distinct], level, hierarchy.levels[-1])
    except HierarchyError as error:
        raise HierarchyError(
            error.detail, field=f"dataset.columns.{column}", code=error.code
        ) from None


def check_table(
    frame: pd.DataFrame, policy: DatasetPolicy, files: dict[str, str]
) -> dict[str, str]:
    """Raise a 4xx-mapped error naming the column and values unless ``frame`` fits the policy;
    return the stored type of every column."""
    _require_columns(frame, policy)
    if frame.empty:
        raise DataError(
            "the file has a header but no rows: there is nothing to release",
            field="file",
            code="no_rows",
        )
    spec = policy.dataset
    missing_subject = frame[spec.subject].isna()
    if missing_subject.any():
        raise DataError(
            f"rows without a subject at lines {_lines(missing_subject)}", field="dataset.subject"
        )
    hierarchies = resolve_hierarchies(policy, files)
    types = {str(column): "text" for column in frame.columns}
    for column, column_spec in spec.columns.items():
        hierarchy = hierarchies.get(column)
        types[column] = _check_values(frame, column, hierarchy, column_spec.role)
        if isinstance(hierarchy, MappingHierarchy):
            _check_coverage(frame, column, hierarchy, column_spec.level or hierarchy.levels[0])
    return types


def _distinct_labels(values: pd.Series, hierarchy: Hierarchy, source: str) -> dict[str, int]:
    """How many distinct labels the column has at each level from ``source`` up."""
    labels = [str(value) for value in values.dropna().unique()]
    if isinstance(hierarchy, TimeHierarchy) and source == "day":
        labels = sorted({label[:10] for label in labels})
    counts = {source: len(labels)}
    for level in hierarchy.levels[hierarchy.index(source) + 1 :]:
        try:
            counts[level] = len(set(hierarchy.generalize_labels(labels, source, level).values()))
        except (HierarchyError, ValueError):
            continue
    return counts


def cardinalities(
    frame: pd.DataFrame, policy: DatasetPolicy, files: dict[str, str]
) -> dict[str, dict[str, int]]:
    """Per dimension column, its number of distinct labels at each level (to estimate cells)."""
    hierarchies = resolve_hierarchies(policy, files)
    return {
        column: _distinct_labels(
            frame[column], hierarchy, policy.dataset.columns[column].level or hierarchy.levels[0]
        )
        for column, hierarchy in hierarchies.items()
        if column in frame.columns
    }


def release_source(content: bytes, file_format: str, policy: DatasetPolicy) -> pa.Table:
    """The stored file as an Arrow table for the engine: codes as text, measures as numbers."""
    if file_format == "parquet":
        return pq.read_table(io.BytesIO(content))
    measures = {c for c, spec in policy.dataset.columns.items() if spec.role == "measure"}
    first_line = content.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    header = next(csv.reader([first_line]))
    types = {name: pa.float64() if name in measures else pa.string() for name in header}
    return pa_csv.read_csv(
        io.BytesIO(content),
        convert_options=pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )

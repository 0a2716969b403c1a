"""The heavy step: raw rows → cells, run in DuckDB.

Two passes. The first scans the source once and reduces it to one row per (raw key, subject):
expression hierarchies (time, bands) are generalized in SQL, lookup hierarchies keep the raw
value. The second maps raw values to their labels through small lookup tables (so an uncovered
value is reported by name), rolls subjects up into every published grouping set (cells and, with
totals, every margin) and keeps, per cell, the distinct subjects, the sums and the largest
per-subject contributions that the dominance rules read.
"""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

import duckdb

from anonymization.errors import DataError, HierarchyError, InvalidRequest
from anonymization.hierarchies import TOP, ExpressionHierarchy, MappingHierarchy
from anonymization.plan import AggregatePlan, Dimension, Filter
from anonymization.source import Source, connection, engine_errors, open_source, quote

if TYPE_CHECKING:
    # Imported where used: the scan can start while the CLI is still importing pandas.
    import pandas as pd


def _key_sql(dimension: Dimension | Filter) -> str:
    column = quote(dimension.column)
    hierarchy = dimension.hierarchy
    if isinstance(hierarchy, ExpressionHierarchy):
        return hierarchy.expression(f"CAST({column} AS {hierarchy.sql_type})", dimension.level)
    return f"CAST({column} AS VARCHAR)"


def _grouping(dimension: Dimension) -> tuple[str, str]:
    """An expression hierarchy's cheap grouping key over the typed column, and its label as an
    expression of ``{k}`` (the key)."""
    hierarchy = dimension.hierarchy
    assert isinstance(hierarchy, ExpressionHierarchy)
    typed = f"CAST({quote(dimension.column)} AS {hierarchy.sql_type})"
    return hierarchy.grouping(typed, dimension.level)


def _group_key_sql(dimension: Dimension) -> str:
    """What the scan groups a dimension's rows by: the raw value for a lookup hierarchy, the
    cheap key of an expression hierarchy (labelled later, on the few groups)."""
    return _grouping(dimension)[0] if dimension.by_expression else _key_sql(dimension)


def _label_sql(dimension: Dimension, key: str) -> str:
    """The label of an expression hierarchy's grouping key ``key``."""
    return _grouping(dimension)[1].replace("{k}", key)


def _row_filters(plan: AggregatePlan) -> tuple[list[str], list[Any]]:
    """WHERE clauses applied during the scan, with their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for item in plan.filters:
        column = quote(item.column)
        hierarchy = item.hierarchy
        typed = f"CAST({column} AS {getattr(hierarchy, 'sql_type', 'VARCHAR')})"
        if item.low is not None:
            clauses.append(f"{typed} >= CAST(? AS {getattr(hierarchy, 'sql_type', 'VARCHAR')})")
            params.append(item.low)
        if item.high is not None:
            if getattr(hierarchy, "sql_type", None) == "TIMESTAMP" and len(item.high) == 10:
                clauses.append(f"{typed} < CAST(? AS DATE) + INTERVAL 1 DAY")
            else:
                clauses.append(f"{typed} <= CAST(? AS {getattr(hierarchy, 'sql_type', 'VARCHAR')})")
            params.append(item.high)
        if item.values is not None and (
            isinstance(hierarchy, ExpressionHierarchy) or item.level == item.source_level
        ):
            clauses.append(f"{_key_sql(item)} IN ({', '.join('?' for _ in item.values)})")
            params.extend(item.values)
    return clauses, params


def _lookup_filters(plan: AggregatePlan) -> list[Filter]:
    """Value filters at a coarser level of a lookup hierarchy: applied after the lookup."""
    return [
        f
        for f in plan.filters
        if f.values is not None
        and isinstance(f.hierarchy, MappingHierarchy)
        and f.level != f.source_level
    ]


def _scan(con: duckdb.DuckDBPyConnection, plan: AggregatePlan, table: str = "contrib") -> None:
    """First pass: one row per (key, subject) in the temporary table ``table``."""
    keys = [f"{_group_key_sql(d)} AS k{i}" for i, d in enumerate(plan.dimensions)]
    keys += [
        f"CAST({quote(f.column)} AS VARCHAR) AS f{i}" for i, f in enumerate(_lookup_filters(plan))
    ]
    sums = [
        f"sum({quote(m)}) AS m{i}, count({quote(m)}) AS n{i}" for i, m in enumerate(plan.summed)
    ]
    where, params = _row_filters(plan)
    sql = (
        f"CREATE TEMP TABLE {table} AS SELECT {', '.join([*keys, ''])}"
        f"CAST({quote(plan.subject)} AS VARCHAR) AS subject, count(*) AS nrows"
        f"{''.join(', ' + s for s in sums)} FROM src"
        f"{' WHERE ' + ' AND '.join(where) if where else ''} GROUP BY ALL"
    )
    con.execute(sql, params)
    checks = ["subject", *(f"k{i}" for i in range(len(plan.dimensions)))]
    columns = [plan.subject, *(d.column for d in plan.dimensions)]
    counts = (
        con.execute(
            "SELECT "
            + ", ".join(f"count(*) FILTER (WHERE {c} IS NULL)" for c in checks)
            + f" FROM {table}"
        ).fetchone()
        or ()
    )
    for column, empty in zip(columns, counts, strict=True):
        if empty:
            raise DataError(
                f"column {column!r} has empty values in {empty} group(s); "
                "fill or filter them before release",
                field=column,
            )


def _register_lookups(
    con: duckdb.DuckDBPyConnection, plan: AggregatePlan, table: str
) -> tuple[list[str], list[str], list[Any]]:
    """Lookup tables for raw values; returns label expressions, joins and filter params."""
    labels: list[str] = []
    joins: list[str] = []
    params: list[Any] = []
    for i, dimension in enumerate(plan.dimensions):
        if dimension.by_expression:
            labels.append(f"{_label_sql(dimension, f'c.k{i}')} AS k{i}")
            continue
        labels.append(f"l{i}.label AS k{i}")
        joins.append(_lookup(con, table, f"l{i}", f"k{i}", dimension, dimension.level))
    for i, item in enumerate(_lookup_filters(plan)):
        joins.append(_lookup(con, table, f"lf{i}", f"f{i}", item, item.level))
        assert item.values is not None
        joins[-1] += f" AND lf{i}.label IN ({', '.join('?' for _ in item.values)})"
        params.extend(item.values)
    return labels, joins, params


def _lookup(
    con: duckdb.DuckDBPyConnection,
    table: str,
    alias: str,
    key: str,
    item: Dimension | Filter,
    level: str,
) -> str:
    raw = [row[0] for row in con.execute(f"SELECT DISTINCT {key} FROM {table}").fetchall()]
    hierarchy = item.hierarchy
    assert isinstance(hierarchy, MappingHierarchy)
    try:
        mapping = hierarchy.generalize_labels(raw, item.source_level, level)
    except HierarchyError as error:
        error.field = error.field or item.column
        raise
    if level != TOP and TOP in mapping.values():
        shown = sorted(repr(raw) for raw, label in mapping.items() if label == TOP)
        raise HierarchyError(
            f"{item.column} at level {level!r} has the label '{TOP}' (from {', '.join(shown[:5])}),"
            f" which marks a margin (every value) in a release: rename that value in the data",
            field=item.column,
            code="reserved_label",
        )
    import pandas as pd

    mapping_table = pd.DataFrame(
        {"raw": list(mapping), "label": list(mapping.values())}, dtype=object
    )
    con.register(f"{table}_{alias}", mapping_table)
    return f"JOIN {table}_{alias} {alias} ON c.{key} = {alias}.raw"


def grouping_sets(
    count: int, totals: bool, constant: frozenset[int] = frozenset()
) -> list[tuple[int, ...]]:
    """Every published combination of dimensions: the full grid, and all margins with totals.
    A ``constant`` dimension (grouped at ``*``) has no margin of its own: its total is the cell
    itself, which would be published twice."""
    full = tuple(range(count))
    if not totals:
        return [full]
    varying = tuple(d for d in full if d not in constant)
    return [
        tuple(sorted((*combo, *constant)))
        for size in range(len(varying), -1, -1)
        for combo in combinations(varying, size)
    ]


def compute_cells(
    source: Source, plan: AggregatePlan, noise_secret: bytes | None = None
) -> pd.DataFrame:
    """The cell table: dimension labels (``*`` on margins), ``subjects``, ``rows`` and, per
    summed measure ``m``: ``m_sum``, ``m_n`` (non-empty values) and ``m_top`` (largest
    per-subject contributions, descending). With noise in the plan, also ``cell_key``: the sum
    of the record keys of the cell's distinct subjects modulo 2^64 (margins included)."""
    keyed = plan.protection.noise is not None
    if keyed and not noise_secret:
        raise InvalidRequest(
            "the policy adds noise: give the dataset's noise secret", field="noise_secret"
        )
    with connection() as con:
        open_source(con, source, plan)
        with engine_errors():
            _scan(con, plan)
            if keyed:
                assert noise_secret is not None
                _register_record_keys(con, noise_secret)
            cells = _roll_up(con, plan, keyed)
            _require_finite_sums(cells, plan)
            if not plan.totals:
                cells.attrs["additive"] = _additive(con, plan)
            return cells


def _require_finite_sums(cells: pd.DataFrame, plan: AggregatePlan) -> None:
    """Refuse the release when a sum is not a number: an infinite value, or finite ones whose
    sum overflows a double, would otherwise be published as ``inf`` (or ``nan``)."""
    for measure in plan.summed:
        sums = cells[f"{measure}_sum"].astype("float64")
        bad = sums.isin([math.inf, -math.inf]) | (sums.isna() & (cells[f"{measure}_n"] > 0))
        if bad.any():
            raise DataError(
                f"measure {measure!r} has values that are not finite numbers (inf, NaN), or "
                f"values whose sum exceeds the largest number (about 1.8e308), in "
                f"{int(bad.sum())} cell(s): release refused",
                field=measure,
            )


def _register_record_keys(
    con: duckdb.DuckDBPyConnection, secret: bytes, table: str = "contrib"
) -> None:
    """The table ``record_keys``: each distinct subject's record key (computed once per subject,
    not per row)."""
    import pyarrow as pa

    from anonymization.ptable import record_keys

    found = con.execute(f"SELECT DISTINCT subject FROM {table}").fetchnumpy()["subject"]
    subjects = [str(s) for s in found]
    keys = pa.array(record_keys(secret, subjects), type=pa.uint64())
    con.register(
        "record_keys", pa.table({"subject": pa.array(subjects, pa.string()), "rkey": keys})
    )


def _additive(con: duckdb.DuckDBPyConnection, plan: AggregatePlan) -> list[str]:
    """Dimensions along which each subject has a single label (its distinct counts add up).

    Read first on the scan's keys (one key per subject implies one label); only a lookup
    dimension that fails there is checked again on its labels, where keys may merge."""
    dims = list(plan.dimensions)
    counts = [f"count(DISTINCT (k{i}, subject))" for i in range(len(dims))]
    row = con.execute(
        f"SELECT {', '.join(['count(DISTINCT subject)', *counts])} FROM contrib"
    ).fetchone()
    assert row is not None
    found = {i for i in range(len(dims)) if row[i + 1] == row[0]}
    again = [i for i in range(len(dims)) if i not in found and not dims[i].by_expression]
    if again:
        per_subject, params = per_subject_sql(con, plan)
        counts = [f"count(DISTINCT (k{i}, subject))" for i in again]
        row = con.execute(
            f"SELECT {', '.join(['count(DISTINCT subject)', *counts])} FROM ({per_subject})",
            params,
        ).fetchone()
        assert row is not None
        found |= {i for i, n in zip(again, row[1:], strict=True) if n == row[0]}
    return [d.column for i, d in enumerate(dims) if i in found]


def differing_subjects(
    source: Source, plan: AggregatePlan, filters: tuple[Filter, ...]
) -> pd.DataFrame:
    """Per cell of ``plan``: how many subjects contribute differently (rows or sums) to the same
    cell computed under ``filters`` instead (those the two populations do not share)."""
    other = replace(plan, filters=filters)
    with connection() as con:
        open_source(con, source, replace(plan, filters=plan.filters + filters))
        with engine_errors():
            _scan(con, plan, "mine")
            _scan(con, other, "theirs")
            mine, params = per_subject_sql(con, plan, "mine")
            theirs, more = per_subject_sql(con, other, "theirs")
            dims = [f"k{i}" for i in range(len(plan.dimensions))]
            keys = ", ".join([*(f"coalesce({d}, '{TOP}') AS {d}" for d in dims), "gid, subject"])
            values = ["nrows", *(f"m{i}" for i in range(len(plan.summed)))]
            differ = " OR ".join(f"a.{v} IS DISTINCT FROM b.{v}" for v in values)
            join = " AND ".join(f"a.{c} = b.{c}" for c in [*dims, "gid", "subject"])
            out = ", ".join(f"coalesce(a.{d}, b.{d}) AS {d}" for d in [*dims, "gid"])
            sql = (
                f"WITH a AS (SELECT {keys}, {', '.join(values)} FROM ({mine})), "
                f"b AS (SELECT {keys}, {', '.join(values)} FROM ({theirs})) "
                f"SELECT {out}, count(*) FILTER (WHERE {differ}) AS differing "
                f"FROM a FULL OUTER JOIN b ON {join} GROUP BY ALL"
            )
            found = con.execute(sql, [*params, *more]).df()
    names = {f"k{i}": d.column for i, d in enumerate(plan.dimensions)}
    return found.drop(columns="gid").rename(columns=names)


def per_subject_sql(
    con: duckdb.DuckDBPyConnection,
    plan: AggregatePlan,
    table: str = "contrib",
    keyed: bool = False,
) -> tuple[str, list[Any]]:
    """SQL of one row per (published cell, subject): the cell's labels ``k0..`` (NULL on
    margins), ``gid``, the subject, its rows and per-measure sums ``m0..`` and counts ``n0..``;
    with ``keyed``, the subject's record key ``rkey`` (from the table ``record_keys``)."""
    labels, joins, params = _register_lookups(con, plan, table)
    if keyed:
        labels.append("r.rkey")
        joins.append("JOIN record_keys r ON c.subject = r.subject")
    dims = [f"k{i}" for i in range(len(plan.dimensions))]
    summed = range(len(plan.summed))
    sets = ", ".join(
        "(" + ", ".join([*(dims[i] for i in combo), "subject"]) + ")"
        for combo in grouping_sets(
            len(dims),
            plan.totals,
            frozenset(i for i, d in enumerate(plan.dimensions) if d.level == TOP),
        )
    )
    grouping = f"GROUPING({', '.join(dims)})" if dims else "0"
    inner = (
        f"SELECT {', '.join([*labels, ''])}c.subject, c.nrows"
        f"{''.join(f', c.m{i}, c.n{i}' for i in summed)} FROM {table} c {' '.join(joins)}"
    )
    sql = (
        f"SELECT {', '.join([*dims, ''])}{grouping} AS gid, subject, sum(nrows) AS nrows"
        f"{''.join(f', sum(m{i}) AS m{i}, sum(n{i}) AS n{i}' for i in summed)}"
        f"{', min(rkey) AS rkey' if keyed else ''} "
        f"FROM ({inner}) GROUP BY GROUPING SETS ({sets})"
    )
    return sql, params


def _roll_up(con: duckdb.DuckDBPyConnection, plan: AggregatePlan, keyed: bool) -> pd.DataFrame:
    per_subject, params = per_subject_sql(con, plan, keyed=keyed)
    dims = [f"k{i}" for i in range(len(plan.dimensions))]
    tops = plan.protection.top_needed()
    outputs = [f"coalesce({d}, '{TOP}') AS {d}" for d in dims]
    outputs += ["count(*) AS subjects", "sum(nrows) AS rows"]
    for i, measure in enumerate(plan.summed):
        outputs += [f"sum(m{i}) AS m{i}_sum", f"sum(n{i}) AS m{i}_n"]
        outputs.append(f"max(m{i}, {tops.get(measure, 1)}) AS m{i}_top")
    if keyed:
        # Exact integer sum (HUGEINT), so the same subjects give the same key in any order.
        outputs.append(f"CAST(sum(rkey) % {2**64} AS UBIGINT) AS cell_key")
    group = ", ".join([*dims, "gid"])
    sql = f"SELECT {', '.join(outputs)} FROM ({per_subject}) GROUP BY {group} ORDER BY gid, {group}"
    cells = con.execute(sql, params).df()
    names = {f"k{i}": d.column for i, d in enumerate(plan.dimensions)}
    for i, measure in enumerate(plan.summed):
        names.update(
            {
                f"m{i}_sum": f"{measure}_sum",
                f"m{i}_n": f"{measure}_n",
                f"m{i}_top": f"{measure}_top",
            }
        )
    cells = cells.rename(columns=names)
    cells["subjects"] = cells["subjects"].astype("int64")
    cells["rows"] = cells["rows"].astype("int64")
    return cells

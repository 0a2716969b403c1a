"""Generalization hierarchies: ladders from a column's raw values to coarser levels.

Two kinds exist. *Expression* hierarchies (time, numeric bands) generalize inside the engine's
SQL, row by row, because their raw values are too many to tabulate. *Mapping* hierarchies (the
INSEE ladder, ARX tables, plain categories) generalize the distinct raw values in Python, so a
value the ladder does not cover is reported by name instead of becoming a silent NULL.
Every ladder ends in the implicit top level ``*`` (fully generalized: a margin).
"""

from __future__ import annotations

import csv
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from anonymization.errors import HierarchyError

TOP = "*"


class Hierarchy(ABC):
    """A ladder of levels, finest first; ``*`` is the implicit top of every ladder."""

    name: str
    levels: tuple[str, ...]
    # Whether the values are codes (INSEE), not quantities, even when they look like numbers:
    # never released as numeric ranges (commune 06088 is not 6088, nor between 06004 and 06100).
    codes: bool = False

    def index(self, level: str) -> int:
        """Position of ``level`` in the ladder (``*`` is one past the coarsest)."""
        if level == TOP:
            return len(self.levels)
        try:
            return self.levels.index(level)
        except ValueError:
            raise HierarchyError(
                f"unknown level {level!r} for hierarchy {self.name!r}; "
                f"levels are {', '.join(self.levels)}",
                code="unknown_level",
            ) from None

    def span(self, from_level: str, to_level: str) -> tuple[int, int]:
        """Positions of both levels; ``to_level`` must be ``from_level`` or coarser."""
        start, stop = self.index(from_level), self.index(to_level)
        if stop < start:
            raise HierarchyError(
                f"level {to_level!r} is finer than {from_level!r}", code="level_order"
            )
        return start, stop

    def is_coarser_or_equal(self, level: str, than: str) -> bool:
        """Whether ``level`` is ``than`` or coarser on this ladder."""
        return self.index(level) >= self.index(than)

    @abstractmethod
    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """Map labels published at ``from_level`` to their label at the coarser ``to_level``."""


class MappingHierarchy(Hierarchy):
    """A hierarchy whose raw values are generalized by a lookup over the distinct values."""

    def generalize(self, values: Iterable[str], level: str) -> dict[str, str]:
        """Map each raw value to its label at ``level``; a value not covered is an error."""
        return self.generalize_labels(values, self.levels[0], level)


class ExpressionHierarchy(Hierarchy):
    """A hierarchy generalized by a SQL expression evaluated on every row."""

    sql_type: str

    @abstractmethod
    def expression(self, column_sql: str, level: str) -> str:
        """A DuckDB SQL expression giving the text label of ``column_sql`` at ``level``."""

    def grouping(self, column_sql: str, level: str) -> tuple[str, str]:
        """A cheap key to group rows by at ``level``, and the label of that key as an expression
        of ``{k}``: grouping millions of rows on the key and labelling the few groups afterwards
        costs less than formatting a label on every row."""
        return self.expression(column_sql, level), "{k}"


def uncovered(name: str, values: Sequence[str]) -> HierarchyError:
    """The error naming the ``values`` that hierarchy ``name`` does not cover (the first ten)."""
    shown = ", ".join(repr(v) for v in sorted(values)[:10])
    more = f" and {len(values) - 10} more" if len(values) > 10 else ""
    return HierarchyError(
        f"hierarchy {name!r} does not cover the value(s) {shown}{more}", code="value_not_covered"
    )


class CategoricalHierarchy(MappingHierarchy):
    """A plain category: its only level is the value itself."""

    def __init__(self, name: str = "categorical") -> None:
        self.name = name
        self.levels = ("value",)

    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """Identity at ``value``, ``*`` at the top."""
        self.index(from_level)
        top = self.index(to_level) == len(self.levels)
        return {label: TOP if top else label for label in labels}


class TableHierarchy(MappingHierarchy):
    """A custom ladder given as a table: one row per value, one column per level (ARX format)."""

    def __init__(
        self, name: str, rows: Sequence[Sequence[str]], levels: Sequence[str] | None = None
    ):
        if not rows:
            raise HierarchyError(f"hierarchy {name!r} has no rows", code="empty_hierarchy")
        width = len(rows[0])
        for number, row in enumerate(rows, start=1):
            if len(row) != width:
                raise HierarchyError(
                    f"hierarchy {name!r}: row {number} has {len(row)} columns, expected {width}",
                    code="malformed_hierarchy",
                )
        # ARX ladders end with a column of `*`: that is our implicit top, not a level.
        if all(row[-1] == TOP for row in rows) and width > 1:
            width -= 1
        names = tuple(levels) if levels else ("value", *(f"level{i}" for i in range(1, width)))
        if len(names) != width or len(set(names)) != width:
            raise HierarchyError(
                f"hierarchy {name!r} has {width} levels but {len(names)} distinct names were given",
                code="malformed_hierarchy",
            )
        self.name = name
        self.levels = names
        self._columns: list[dict[str, str]] = [{} for _ in range(width)]
        for row in rows:
            for position in range(width):
                parent = row[position + 1] if position + 1 < width else TOP
                previous = self._columns[position].setdefault(row[position], parent)
                if previous != parent:
                    raise HierarchyError(
                        f"hierarchy {name!r}: {row[position]!r} at level {names[position]!r} has "
                        f"two parents, {previous!r} and {parent!r}",
                        code="malformed_hierarchy",
                    )

    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """Walk each label up the table from ``from_level`` to ``to_level``."""
        start, stop = self.span(from_level, to_level)
        labels = list(dict.fromkeys(labels))
        missing = [label for label in labels if label not in self._columns[start]]
        if missing:
            raise uncovered(self.name, missing)
        result = {}
        for label in labels:
            current = label
            for position in range(start, stop):
                current = self._columns[position][current]
            result[label] = current
        return result


def load_arx_csv(
    path: str | Path,
    name: str | None = None,
    levels: Sequence[str] | None = None,
    delimiter: str = ";",
) -> TableHierarchy:
    """Read a hierarchy in ARX's CSV format: ``value;level1;...;*``, no header."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle, delimiter=delimiter) if row]
    except OSError as error:
        raise HierarchyError(
            f"cannot read hierarchy file {path}: {error.strerror}", code="hierarchy_file"
        ) from None
    except UnicodeDecodeError:
        raise HierarchyError(
            f"hierarchy file {path} is not UTF-8 text", code="hierarchy_file"
        ) from None
    return TableHierarchy(name or path.stem, rows, levels)


# --- The INSEE geographic ladder -----------------------------------------------------------

_GEO_PATTERNS = {
    "iris": re.compile(r"(?:\d{2}|2[AB])\d{3}\d{4}|97\d{7}"),
    "commune": re.compile(r"(?:\d{2}|2[AB])\d{3}|97\d{3}"),
    "departement": re.compile(r"0[1-9]|[1-8]\d|9[0-5]|2[AB]|97[1-6]"),
    "region": re.compile(r"\d{2}"),
}


@cache
def _reference(name: str) -> dict[str, str]:
    """A shipped reference CSV as a dict: code → its parent code (or its name)."""
    text = resources.files("anonymization").joinpath("reference", name).read_text(encoding="utf-8")
    reader = csv.DictReader(text.splitlines())
    parent = {"communes.csv": "departement", "departements.csv": "region"}.get(name, "name")
    return {row["code"]: row[parent] for row in reader}


_GEO_TABLES = {
    "iris": "communes.csv",
    "commune": "communes.csv",
    "departement": "departements.csv",
    "region": "regions.csv",
}


class GeoFrHierarchy(MappingHierarchy):
    """INSEE codes: IRIS (9 chars) < commune (5) < département (2A/2B, 971-976...) < région.

    Communes, départements and régions are checked against the shipped INSEE reference; IRIS
    codes (no offline reference exists) are checked for their shape and their commune.
    """

    codes = True

    def __init__(self) -> None:
        self.name = "geo_fr"
        self.levels = ("iris", "commune", "departement", "region")

    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """Generalize INSEE codes at ``from_level`` to ``to_level``; unknown codes are errors."""
        start, stop = self.span(from_level, to_level)
        known = _reference(_GEO_TABLES[from_level])
        result: dict[str, str] = {}
        bad: list[str] = []
        for label in dict.fromkeys(labels):
            if (
                not _GEO_PATTERNS.get(from_level, _GEO_PATTERNS["region"]).fullmatch(label)
                or (label[:5] if from_level == "iris" else label) not in known
            ):
                bad.append(label)
                continue
            code = label
            for level in self.levels[start:stop]:
                code = _geo_parent(code, level)
            result[label] = code
        if bad:
            raise uncovered(self.name, bad)
        return result


def _geo_parent(code: str, level: str) -> str:
    """The code one level up from ``code`` at ``level``."""
    if level == "iris":
        return code[:5]
    if level == "commune":
        return _reference("communes.csv")[code]
    if level == "departement":
        return _reference("departements.csv")[code]
    return TOP


# --- Time and numeric bands ------------------------------------------------------------------

_TIME_SQL = {
    "day": "strftime({c}, '%Y-%m-%d')",
    "week": "strftime({c}, '%G-W%V')",
    "month": "strftime({c}, '%Y-%m')",
    "quarter": "(CAST(year({c}) AS VARCHAR) || '-Q' || CAST(quarter({c}) AS VARCHAR))",
    "year": "CAST(year({c}) AS VARCHAR)",
}


class TimeHierarchy(ExpressionHierarchy):
    """ISO dates or timestamps: day < week < month < quarter < year (weeks are ISO weeks).

    An ISO week straddles months, so week labels generalize to the ISO year only.
    """

    sql_type = "TIMESTAMP"

    def __init__(self) -> None:
        self.name = "time"
        self.levels = ("day", "week", "month", "quarter", "year")

    def expression(self, column_sql: str, level: str) -> str:
        """Text label of the timestamp at ``level`` (``2025-06-14``, ``2025-W24``, ``2025-06``)."""
        if self.index(level) == len(self.levels):
            return f"'{TOP}'"
        return _TIME_SQL[level].format(c=column_sql)

    def grouping(self, column_sql: str, level: str) -> tuple[str, str]:
        """The timestamp truncated to ``level`` (ISO weeks start on Monday), labelled after."""
        if self.index(level) == len(self.levels):
            return f"'{TOP}'", "{k}"
        return f"date_trunc('{level}', {column_sql})", self.expression("{k}", level)

    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """Generalize time labels (week labels only reach ``year`` and ``*``)."""
        self.span(from_level, to_level)
        if from_level == "week" and to_level in ("month", "quarter"):
            raise HierarchyError("ISO weeks do not nest in months or quarters", code="level_order")
        return {label: _time_label(label, from_level, to_level) for label in labels}


def _time_label(label: str, from_level: str, to_level: str) -> str:
    if to_level == TOP:
        return TOP
    if to_level == from_level:
        return label
    year = label[:4]
    if to_level == "year":
        return year
    if from_level == "day" and to_level == "week":
        import datetime

        iso = datetime.date.fromisoformat(label).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    month = int(label[5:7])
    if to_level == "month":
        return label[:7]
    return f"{year}-Q{(month - 1) // 3 + 1}"


BUILTIN: dict[str, Callable[[], Hierarchy]] = {"geo_fr": GeoFrHierarchy, "time": TimeHierarchy}


def builtin(name: str) -> Hierarchy | None:
    """A built-in hierarchy by name (``geo_fr``, ``time``), or None."""
    factory = BUILTIN.get(name)
    return factory() if factory else None

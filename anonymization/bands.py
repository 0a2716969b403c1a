"""Numeric bands of growing widths (ages, kWh, incomes): a hierarchy computed in SQL, with
half-open labels such as ``[30,35)``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

from anonymization.errors import HierarchyError
from anonymization.hierarchies import TOP, ExpressionHierarchy, uncovered


class BandHierarchy(ExpressionHierarchy):
    """Numeric bands of growing widths, e.g. ``[5, 10, 20]``: value < band5 < band10 < band20.

    Each width must divide the next so that bands nest. Labels are half-open: ``[30,35)``.
    """

    sql_type = "DOUBLE"
    # Labels print a band's bounds: whole widths as BIGINT, exact only up to 2**53, so widths
    # stay within these bounds (a width of 1e308 or 1e-300 labels nothing sensible).
    MIN_WIDTH = 1e-6
    MAX_WIDTH = 1e15

    def __init__(self, name: str, widths: Sequence[float]) -> None:
        if not widths or not all(self.MIN_WIDTH <= w <= self.MAX_WIDTH for w in widths):
            raise HierarchyError(
                f"hierarchy {name!r}: band widths must be numbers from {self.MIN_WIDTH:g} "
                f"to {self.MAX_WIDTH:g} (got {list(widths)})",
                field=f"hierarchies.{name}.bands",
                code="malformed_hierarchy",
            )
        for small, large in itertools.pairwise(widths):
            if large <= small or not (large / small).is_integer():
                raise HierarchyError(
                    f"hierarchy {name!r}: band width {large} is not a multiple of {small}",
                    field=f"hierarchies.{name}.bands",
                    code="malformed_hierarchy",
                )
        self.name = name
        self.widths = tuple(widths)
        self.levels = ("value", *(f"band{_fmt(w)}" for w in widths))

    def expression(self, column_sql: str, level: str) -> str:
        """Text label of the number's band at ``level``."""
        key, label = self.grouping(column_sql, level)
        return label.replace("{k}", key)

    def grouping(self, column_sql: str, level: str) -> tuple[str, str]:
        """The band's number (``floor(x / width)``), labelled ``[low,high)`` after."""
        position = self.index(level)
        if position == len(self.levels):
            return f"'{TOP}'", "{k}"
        if position == 0:
            return column_sql, "CAST({k} AS VARCHAR)"
        width = self.widths[position - 1]
        low = f"({{k}} * {width})"
        cast = "BIGINT" if float(width).is_integer() else "DOUBLE"
        label = (
            f"('[' || CAST(CAST({low} AS {cast}) AS VARCHAR) || ',' || "
            f"CAST(CAST({low} + {width} AS {cast}) AS VARCHAR) || ')')"
        )
        return f"floor({column_sql} / {width})", label

    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """Generalize band labels to a wider band (a value that is not a finite number, such as
        ``inf`` or ``nan``, has no band: it is not covered)."""
        start, stop = self.span(from_level, to_level)
        result, infinite = {}, []
        for label in labels:
            if stop == len(self.levels):
                result[label] = TOP
                continue
            low = float(label.strip("[").split(",")[0]) if start else float(label)
            if not math.isfinite(low):
                infinite.append(label)
                continue
            width = self.widths[stop - 1] if stop else 0.0
            result[label] = label if not stop else _band_label(low, width)
        if infinite:
            raise uncovered(self.name, infinite)
        return result


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _band_label(value: float, width: float) -> str:
    low = (value // width) * width
    return f"[{_fmt(low)},{_fmt(low + width)})"

"""Range filters (``from``, ``to``) on time and numeric columns.

A bound is parsed before anything reads data: a time bound is a day (``YYYY-MM-DD``: a range
covers whole days, ``to`` included), a numeric bound a finite decimal number. A time range must
also be whole periods of the finest level the policy releases for its column (a month allowed:
``from`` the first day of a month, ``to`` the last), so that filters give no finer grain than
``group_by`` does.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re

from anonymization.errors import InvalidRequest
from anonymization.hierarchies import TOP, Hierarchy, TimeHierarchy
from policies.models import DAY, FilterSpec

NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
Bound = datetime.date | float


def takes_ranges(hierarchy: Hierarchy) -> bool:
    """Whether a column on ``hierarchy`` can be filtered by a range (time and numeric ones)."""
    return hasattr(hierarchy, "sql_type")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _parse(text: str, temporal: bool, field: str) -> Bound:
    if temporal and DAY.fullmatch(text):
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            pass
    if not temporal and NUMBER.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    wanted = (
        "a day, YYYY-MM-DD (a range on a time column covers whole days, `to` included)"
        if temporal
        else "a finite decimal number"
    )
    raise InvalidRequest(f"{_shown(text)} is not {wanted}", field=field, code="invalid_filter")


def parse_range(
    hierarchy: Hierarchy, spec: FilterSpec, field: str
) -> tuple[Bound | None, Bound | None]:
    """The bounds of a range filter parsed for its column; raise naming ``<field>.from`` or
    ``<field>.to`` when one does not parse, or when ``from`` is after ``to``."""
    temporal = isinstance(hierarchy, TimeHierarchy)
    low = None if spec.low is None else _parse(spec.low, temporal, f"{field}.from")
    high = None if spec.high is None else _parse(spec.high, temporal, f"{field}.to")
    if low is not None and high is not None and _ordered(low) > _ordered(high):
        raise InvalidRequest(
            f"`from` {spec.low} is after `to` {spec.high}: the range is empty",
            field=f"{field}.from",
            code="invalid_filter",
        )
    return low, high


def _ordered(bound: Bound) -> float:
    return bound.toordinal() if isinstance(bound, datetime.date) else bound


def _period(day: datetime.date, level: str) -> tuple[datetime.date, datetime.date]:
    """The first and last day of the period of ``level`` holding ``day``."""
    if level == "day":
        return day, day
    if level == "week":
        start = day - datetime.timedelta(days=day.weekday())
        return start, start + datetime.timedelta(days=6)
    first_month = {"month": day.month, "quarter": (day.month - 1) // 3 * 3 + 1, "year": 1}[level]
    last_month = {"month": day.month, "quarter": first_month + 2, "year": 12}[level]
    last_day = calendar.monthrange(day.year, last_month)[1]
    return day.replace(month=first_month, day=1), day.replace(month=last_month, day=last_day)


def misaligned(
    column: str, level: str, low: Bound | None, high: Bound | None
) -> tuple[str, str] | None:
    """The bound (``from`` or ``to``) of a time range that cuts a period of ``level``, the
    finest level allowed for ``column``, and what is allowed instead; None when it cuts none."""
    for bound, day in (("from", low), ("to", high)):
        if not isinstance(day, datetime.date):
            continue
        if level == TOP:
            return bound, f"the policy releases {column!r} only as a whole: no range is allowed"
        start, end = _period(day, level)
        if day != (start if bound == "from" else end):
            which, example = ("first", start) if bound == "from" else ("last", end)
            return bound, (
                f"`{bound}` must be the {which} day of a {level} (e.g. {example.isoformat()}): "
                f"{level} is the finest level allowed for {column!r}"
            )
    return None

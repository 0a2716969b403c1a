"""Range filters: bounds that do not parse are refused up front, naming the bound; a time range
may not cut a period finer than the level the policy releases for its column."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymization.errors import InvalidRequest
from policies.files import parse, read_document
from policies.models import ExtractRequest, Policy, load_hierarchies
from policies.requests import build_plan, check_request
from tests.factories import EXAMPLES

DOCUMENT = read_document(EXAMPLES / "payments-policy.yaml")
# The example policy, with age on numeric bands (a range needs a time or numeric column).
POLICY = parse(
    Policy,
    {
        **DOCUMENT,
        "hierarchies": {"age_bands": {"bands": [5, 10]}},
        "release": {**DOCUMENT["release"], "dimensions": {"date": "month", "age": "band5"}},
    },
)
HIERARCHIES = load_hierarchies(POLICY, EXAMPLES)
NOT_DAYS = [
    "garbage",
    "2025-13-45",
    "",
    "NaN",
    "2025-07-01\u0000",
    "2025-01-01' OR '1'='1",
    "2025-07",
    "2025-07-01T10:00:00",
    "2025-07-01T00:00:00",
    "20250701",
    "2025-W27-1",
    " 2025-07-01",
]
NOT_NUMBERS = ["garbage", "", "NaN", "inf", "-Infinity", "1e400", "1_000", "30' OR '1'='1", "0x1E"]


def reasons(filters: dict[str, Any]) -> list[tuple[str, str]]:
    request = ExtractRequest.model_validate({"group_by": {"date": "month"}, "filters": filters})
    return [(r.code, r.field) for r in check_request(POLICY, HIERARCHIES, request)]


def refused_field(filters: dict[str, Any]) -> str | None:
    with pytest.raises(InvalidRequest) as refused:
        reasons(filters)
    assert refused.value.code == "invalid_filter"
    return refused.value.field


@pytest.mark.parametrize("bound", ["from", "to"])
@pytest.mark.parametrize("value", NOT_DAYS)
def test_a_time_bound_that_is_not_a_day_names_itself(bound: str, value: str) -> None:
    assert refused_field({"date": {bound: value}}) == f"filters.date.{bound}"
    assert refused_field({"date": {bound: value, "level": "month"}}) == f"filters.date.{bound}"


@settings(max_examples=300)
@given(
    value=st.text(max_size=30)
    | st.from_regex(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[T ]?[0-9:]{0,8}", fullmatch=True)
    | st.dates().map(datetime.date.isoformat)
)
def test_any_text_but_an_iso_day_is_refused_as_a_time_bound(value: str) -> None:
    try:
        is_day = bool(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)) and bool(
            datetime.date.fromisoformat(value)
        )
    except ValueError:
        is_day = False
    if is_day:
        assert reasons({"date": {"from": value}}) in ([], [("level_too_fine", "filters.date.from")])
    else:
        assert refused_field({"date": {"from": value}}) == "filters.date.from"


@pytest.mark.parametrize("bound", ["from", "to"])
@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_a_numeric_bound_that_is_not_a_finite_number_names_itself(bound: str, value: str) -> None:
    assert refused_field({"age": {bound: value}}) == f"filters.age.{bound}"


def test_numeric_bounds_parse_and_from_after_to_is_refused() -> None:
    assert reasons({"age": {"from": "30", "to": "39.5"}}) == []
    assert reasons({"age": {"from": 30, "to": 1e2}}) == []  # YAML numbers
    assert refused_field({"age": {"from": 40, "to": 30}}) == "filters.age.from"
    backwards = {"from": "2025-08-01", "to": "2025-07-31"}
    assert refused_field({"date": backwards}) == "filters.date.from"


@pytest.mark.parametrize(
    ("bounds", "field"),
    [
        ({"from": "2025-06-01", "to": "2025-08-31"}, None),
        ({"from": "2025-06-01"}, None),
        ({"to": "2025-02-28"}, None),
        ({"from": "2024-02-01", "to": "2024-02-29"}, None),
        ({"from": "2025-07-02", "to": "2025-08-31"}, "filters.date.from"),
        ({"from": "2025-06-01", "to": "2025-08-30"}, "filters.date.to"),
        ({"from": "2025-07-01", "to": "2025-07-01"}, "filters.date.to"),
    ],
)
def test_a_time_range_follows_the_finest_level_allowed(
    bounds: dict[str, str], field: str | None
) -> None:
    found = reasons({"date": bounds})
    assert found == ([] if field is None else [("level_too_fine", field)])


def test_the_refusal_says_what_is_allowed() -> None:
    request = ExtractRequest.model_validate(
        {"group_by": {"date": "month"}, "filters": {"date": {"from": "2025-07-15"}}}
    )
    (reason,) = check_request(POLICY, HIERARCHIES, request)
    assert "first day of a month" in reason.detail and "2025-07-01" in reason.detail


@settings(max_examples=200)
@given(
    level=st.sampled_from(["day", "week", "month", "quarter", "year"]),
    low=st.dates(datetime.date(2020, 1, 1), datetime.date(2030, 12, 31)),
    days=st.integers(0, 800),
)
def test_a_range_is_allowed_exactly_when_it_is_whole_periods(
    level: str, low: datetime.date, days: int
) -> None:
    """Allowed iff the range is a union of whole periods of the finest level: grouping by that
    level, each cell of the range covers its whole period (counted against ``date_trunc``)."""
    high = low + datetime.timedelta(days=days)
    found = reasons_at(level, {"from": low.isoformat(), "to": high.isoformat()})
    before, after = low - datetime.timedelta(days=1), high + datetime.timedelta(days=1)
    whole = _period(before, level) != _period(low, level) and _period(high, level) != _period(
        after, level
    )
    assert (found == []) == whole


def _period(day: datetime.date, level: str) -> tuple[int, ...]:
    iso = day.isocalendar()
    return {
        "day": (day.toordinal(),),
        "week": (iso.year, iso.week),
        "month": (day.year, day.month),
        "quarter": (day.year, (day.month - 1) // 3),
        "year": (day.year,),
    }[level]


def reasons_at(level: str, bounds: dict[str, str]) -> list[tuple[str, str]]:
    """The reasons for a range on ``date`` when the finest level allowed is ``level``."""
    release = {**DOCUMENT["release"], "dimensions": {"date": level}}
    policy = parse(Policy, {**DOCUMENT, "release": release})
    request = ExtractRequest.model_validate({"filters": {"date": bounds}})
    found = check_request(policy, load_hierarchies(policy, EXAMPLES), request)
    return [(r.code, r.field) for r in found]


def test_a_column_released_only_as_a_whole_takes_no_range() -> None:
    assert reasons_at("*", {"from": "2025-01-01"}) == [("level_too_fine", "filters.date.from")]
    assert reasons_at("week", {"from": "2025-06-30", "to": "2025-07-13"}) == []


def test_build_plan_raises_the_bound_first() -> None:
    request = ExtractRequest.model_validate(
        {"group_by": {"nope": "value"}, "filters": {"date": {"from": "garbage"}}}
    )
    with pytest.raises(InvalidRequest) as refused:
        build_plan(POLICY, HIERARCHIES, request)
    assert refused.value.field == "filters.date.from"

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.decisions import (
    AgreementTerms,
    Holdings,
    Usage,
    decide,
    estimate_cells,
    holding_reasons,
)
from policies.files import parse, read_document
from policies.models import ExtractRequest, Policy, load_hierarchies
from tests.factories import EXAMPLES

NOW = datetime.datetime(2025, 7, 1, 12, tzinfo=datetime.UTC)
POLICY = parse(Policy, read_document(EXAMPLES / "payments-policy.yaml"))
HIERARCHIES = load_hierarchies(POLICY, EXAMPLES)
CARDINALITIES = {
    "departement": {"departement": 8, "region": 5},
    "date": {"month": 12, "year": 1},
    "card_country": {"value": 4},
}


def terms(**changes: Any) -> AgreementTerms:
    body: dict[str, Any] = {
        "purpose": "tourism statistics",
        "legal_basis": "public_task",
        "valid_from": "2025-01-01",
        "valid_until": "2025-12-31",
        "release": POLICY.release.model_dump(by_alias=True),
        "limits": {"max_cells": 200, "extracts_per_month": 3},
    }
    body.update(changes)
    return AgreementTerms.model_validate(body)


def release(**changes: Any) -> dict[str, Any]:
    return {**POLICY.release.model_dump(by_alias=True), **changes}


def request(**fields: Any) -> ExtractRequest:
    body: dict[str, Any] = {
        "group_by": {"departement": "departement", "date": "month"},
        "measures": ["amount.sum", "subjects"],
    }
    body.update(fields)
    return ExtractRequest.model_validate(body)


def run(
    status: str = "active",
    agreement: AgreementTerms | None = None,
    req: ExtractRequest | None = None,
    used: int = 0,
    now: datetime.datetime = NOW,
) -> Any:
    return decide(
        POLICY.dataset,
        HIERARCHIES,
        status,
        agreement or terms(),
        req or request(),  # type: ignore[arg-type]
        Usage(extracts_this_month=used),
        now,
        CARDINALITIES,
    )


def test_permit_carries_the_plan_and_the_estimate() -> None:
    decision = run()
    assert decision.permit and not decision.reasons
    assert decision.plan is not None and decision.plan["dimensions"] == {
        "departement": "departement",
        "date": "month",
    }
    assert decision.estimated_cells == 96


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"status": "suspended"}, "agreement_suspended"),
        ({"status": "revoked"}, "agreement_revoked"),
        ({"now": datetime.datetime(2024, 12, 31, tzinfo=datetime.UTC)}, "agreement_not_yet_valid"),
        ({"now": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}, "agreement_expired"),
        ({"used": 3}, "quota_reached"),
        ({"req": request(group_by={"date": "day"})}, "level_too_fine"),
        ({"req": request(measures=["amount.count"])}, "measure_not_allowed"),
        (
            {
                "agreement": terms(release=release(filters=["date"])),
                "req": request(filters={"card_country": {"in": ["DE"]}}),
            },
            "filter_not_allowed",
        ),
        (
            {"agreement": terms(release=release(formats=["csv"])), "req": request(format="json")},
            "format_not_allowed",
        ),
        (
            {
                "req": request(
                    group_by={
                        "departement": "departement",
                        "date": "month",
                        "card_country": "value",
                    },
                    totals=True,
                )
            },
            "too_many_cells",
        ),
    ],
)
def test_each_denial_has_its_reason(kwargs: dict[str, Any], code: str) -> None:
    decision = run(**kwargs)
    assert not decision.permit and decision.plan is None
    assert code in [r.code for r in decision.reasons]


def test_all_reasons_together() -> None:
    decision = run(status="suspended", used=5, req=request(group_by={"date": "day"}))
    assert [r.code for r in decision.reasons] == [
        "agreement_suspended",
        "level_too_fine",
        "quota_reached",
    ]


def test_terms_validate_their_window_and_basis() -> None:
    with pytest.raises(ValidationError):
        terms(valid_until="2024-01-01")
    with pytest.raises(ValidationError):
        terms(legal_basis="because")


@given(
    st.dictionaries(
        st.sampled_from(["departement", "date", "card_country"]),
        st.sampled_from(["departement", "month", "value", "*"]),
        max_size=3,
    ),
    st.booleans(),
)
def test_the_estimate_bounds_the_grid(group_by: dict[str, str], totals: bool) -> None:
    req = ExtractRequest(group_by=group_by, totals=totals)
    estimate = estimate_cells(req, CARDINALITIES)
    plain = estimate_cells(req.model_copy(update={"totals": False}), CARDINALITIES)
    assert estimate >= plain >= 1


NUMBERS = st.integers() | st.sampled_from([2**53, 2**63, 10**30, 1_000_001]) | st.floats()
AGGREGATE = {
    "k": 5,
    "dominance": {"n": 1, "percent": 85},
    "p_percent": {"p": 10},
    "interval": {"p": 15},
    "noise": {"method": "cell_key", "max": 2, "variance": 1},
}
MICRODATA = {
    "kind": "microdata",
    "quasi_identifiers": {"departement": {}},
    "sensitive": ["card_country"],
    "protection": {
        "k": 5,
        "l": {"kind": "recursive", "l": 2, "c": 3},
        "t": {"max": 0.5},
        "suppression_limit": 0.1,
    },
    "risk": {"threshold": 0.2, "population": 1000},
}
NUMBER_FIELDS = [
    *(("release", "protection", *path) for path in (("k",), ("dominance", "n"))),
    *(("release", "protection", *path) for path in (("dominance", "percent"), ("p_percent", "p"))),
    *(("release", "protection", *path) for path in (("interval", "p"), ("noise", "max"))),
    ("release", "protection", "noise", "variance"),
    ("release", "max_cells"),
    ("limits", "max_cells"),
    ("limits", "extracts_per_month"),
    ("retention_days",),
    *(
        ("microdata", "protection", *path)
        for path in (("k",), ("l", "l"), ("l", "c"), ("t", "max"))
    ),
    ("microdata", "protection", "suppression_limit"),
    *(("microdata", "risk", name) for name in ("threshold", "population")),
]


@pytest.mark.parametrize("path", NUMBER_FIELDS, ids=".".join)
@settings(max_examples=60, deadline=None)
@given(value=NUMBERS)
def test_every_number_the_terms_accept_can_be_signed(path: tuple[str, ...], value: float) -> None:
    """Whatever number the terms accept fits RFC 8785, in which the manifest is signed."""
    body = json.loads(json.dumps({"release": release(protection=AGGREGATE), "limits": {}}))
    if path[0] == "microdata":
        body["release"], path = json.loads(json.dumps(MICRODATA)), ("release", *path[1:])
    *parents, name = path
    target = body
    for parent in parents:
        target = target[parent]
    target[name] = value
    try:
        accepted = terms(**body)
    except ValidationError:
        return
    rfc8785.dumps(accepted.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"release": release(protection={"k": 2**63})},
            ("release", "aggregate", "protection", "k"),
        ),
        (
            {"release": release(protection={"k": 1_000_001})},
            ("release", "aggregate", "protection", "k"),
        ),
        ({"release": release(max_cells=10**30)}, ("release", "aggregate", "max_cells")),
        ({"limits": {"max_cells": 10**30}}, ("limits", "max_cells")),
        ({"limits": {"extracts_per_month": 10**30}}, ("limits", "extracts_per_month")),
    ],
)
def test_integers_past_their_bound_name_their_field(
    changes: dict[str, Any], field: tuple[str, ...]
) -> None:
    assert refused_at(terms, changes) == field


def refused_at(make: Callable[..., Any], changes: dict[str, Any]) -> tuple[str | int, ...]:
    """Where validation fails when ``make`` builds its model with ``changes``."""
    with pytest.raises(ValidationError) as refused:
        make(**changes)
    return refused.value.errors()[0]["loc"]


MICRODATA_RELEASE = {"kind": "microdata", "quasi_identifiers": {"departement": {}}}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"retention_days": "30"}, ("retention_days",)),
        ({"retention_days": True}, ("retention_days",)),
        ({"retention_days": 30.0}, ("retention_days",)),
        ({"valid_from": 0}, ("valid_from",)),
        ({"valid_from": 1735689600}, ("valid_from",)),
        ({"valid_until": True}, ("valid_until",)),
        ({"valid_from": "2025-01-01T00:00:00"}, ("valid_from",)),
        ({"limits": {"max_cells": "10"}}, ("limits", "max_cells")),
        ({"limits": {"extracts_per_month": True}}, ("limits", "extracts_per_month")),
        ({"release": release(protection={"k": "5"})}, ("release", "aggregate", "protection", "k")),
        ({"release": release(protection={"k": True})}, ("release", "aggregate", "protection", "k")),
        (
            {"release": release(protection={"k": 5, "dominance": {"percent": "85"}})},
            ("release", "aggregate", "protection", "dominance", "percent"),
        ),
        (
            {"release": release(protection={"k": 5, "p_percent": True})},
            ("release", "aggregate", "protection", "p_percent"),
        ),
        ({"release": release(formats=["csv", "csv"])}, ("release", "aggregate", "formats")),
        (
            {"release": release(measures={"amount": ["sum", "sum"]})},
            ("release", "aggregate", "measures", "amount"),
        ),
        ({"release": release(filters=["date", "date"])}, ("release", "aggregate", "filters")),
        (
            {"release": {**MICRODATA_RELEASE, "protection": {"k": "5"}}},
            ("release", "microdata", "protection", "k"),
        ),
        (
            {"release": {**MICRODATA_RELEASE, "formats": ["csv", "csv"]}},
            ("release", "microdata", "formats"),
        ),
        (
            {"release": {**MICRODATA_RELEASE, "sensitive": ["age", "age"]}},
            ("release", "microdata", "sensitive"),
        ),
    ],
)
def test_loose_values_are_refused_naming_their_field(
    changes: dict[str, Any], field: tuple[str, ...]
) -> None:
    """No coercion: a number as text or a boolean, a date as a number, a repeated entry."""
    assert refused_at(terms, changes)[: len(field)] == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"measures": ["subjects", "subjects"]}, ("measures",)),
        ({"totals": "yes"}, ("totals",)),
        ({"totals": 1}, ("totals",)),
        ({"filters": {"card_country": {"in": ["DE", True]}}}, ("filters", "card_country", "in", 1)),
        ({"filters": {"card_country": {"in": [None]}}}, ("filters", "card_country", "in", 0)),
        ({"filters": {"card_country": {"in": [[1]]}}}, ("filters", "card_country", "in", 0)),
        ({"filters": {"card_country": {"in": [1.5]}}}, ("filters", "card_country", "in", 0)),
        ({"filters": {"date": {"from": True}}}, ("filters", "date", "from")),
        ({"filters": {"date": {"to": None, "from": ["2025-01-01"]}}}, ("filters", "date", "from")),
    ],
)
def test_loose_requests_are_refused_naming_their_field(
    fields: dict[str, Any], field: tuple[str, ...]
) -> None:
    assert refused_at(request, fields)[: len(field)] == field


def test_integer_values_are_their_decimal_text() -> None:
    """A code written unquoted in a YAML request (département 74) is the code's text."""
    assert request(filters={"dep": {"in": [74, "2A"]}}).filters["dep"].values == ["74", "2A"]


names = st.lists(st.sampled_from(["extract 1", "extract 2", "extract 3", "extract 4"]), max_size=4)


@given(names, names, names, st.sampled_from(["aggregate", "microdata"]))
def test_a_release_is_denied_exactly_when_it_cannot_be_checked_against_what_is_held(
    aggregate: list[str], microdata: list[str], other: list[str], kind: str
) -> None:
    # Aggregates are checked against aggregates, microdata against microdata of the same key;
    # anything else held of the data is a pair nothing proves safe.
    held = Holdings(
        aggregate=tuple(aggregate), microdata=tuple(microdata), other_microdata=tuple(other)
    )
    reasons = holding_reasons(kind, held)
    unchecked = (microdata + other) if kind == "aggregate" else (aggregate or other)
    assert bool(reasons) == bool(unchecked)
    for reason in reasons:
        assert reason.field == "agreement"
        assert any(name in reason.detail for name in unchecked)


def test_an_aggregate_request_is_denied_to_a_partner_holding_microdata_of_the_data() -> None:
    held = Holdings(other_microdata=("extract 7",))
    decision = decide(
        POLICY.dataset, HIERARCHIES, "active", terms(), request(), Usage(), NOW, holdings=held
    )
    assert not decision.permit
    assert [reason.code for reason in decision.reasons] == ["holds_microdata"]
    assert "extract 7" in decision.reasons[0].detail

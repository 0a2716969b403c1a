from __future__ import annotations

from typing import Any

import pytest

from anonymization.bands import BandHierarchy
from anonymization.errors import HierarchyError, InvalidRequest, PolicyViolation
from policies.files import parse, read_document
from policies.models import BandSpec, ExtractRequest, Policy, load_hierarchies
from policies.requests import build_plan, check_policy, check_request
from tests.factories import EXAMPLES


@pytest.fixture
def policy() -> Policy:
    return parse(Policy, read_document(EXAMPLES / "payments-policy.yaml"))


def request(**fields: Any) -> ExtractRequest:
    body: dict[str, Any] = {"group_by": {"departement": "departement"}, "measures": ["subjects"]}
    body.update(fields)
    return ExtractRequest.model_validate(body)


def codes(policy: Policy, req: ExtractRequest) -> list[tuple[str, str]]:
    hierarchies = load_hierarchies(policy, EXAMPLES)
    return [(r.code, r.field) for r in check_request(policy, hierarchies, req)]


def test_the_example_request_is_planned(policy: Policy) -> None:
    hierarchies = load_hierarchies(policy, EXAMPLES)
    check_policy(policy, hierarchies)
    req = parse(ExtractRequest, read_document(EXAMPLES / "payments-request.yaml"))
    plan = build_plan(policy, hierarchies, req)
    assert plan.describe()["dimensions"] == {"departement": "departement", "date": "month"}
    assert plan.protection.dominance is not None and plan.protection.dominance.measure == "amount"
    assert plan.describe()["filters"]["date"] == {
        "level": "day",
        "from": "2025-06-01",
        "to": "2025-08-31",
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"group_by": {"date": "day"}}, ("level_too_fine", "group_by.date")),
        ({"group_by": {"departement": "commune"}}, ("level_too_fine", "group_by.departement")),
        ({"group_by": {"date": "fortnight"}}, ("unknown_level", "group_by.date")),
        ({"group_by": {"nope": "value"}}, ("unknown_column", "group_by.nope")),
        ({"group_by": {"holder_name": "value"}}, ("identifier_used", "group_by.holder_name")),
        ({"group_by": {"card_id": "value"}}, ("identifier_used", "group_by.card_id")),
        ({"measures": ["amount.max"]}, ("unknown_measure", "measures[0]")),
        ({"measures": ["amount.count"]}, ("measure_not_allowed", "measures[0]")),
        ({"measures": ["holder_name.sum"]}, ("identifier_used", "measures[0]")),
        ({"filters": {"holder_name": {"in": ["x"]}}}, ("identifier_used", "filters.holder_name")),
        ({"filters": {"card_country": {"from": "A"}}}, ("invalid_filter", "filters.card_country")),
        (
            {"filters": {"date": {"level": "day", "in": ["2025-01-01"]}}},
            ("level_too_fine", "filters.date.level"),
        ),
    ],
)
def test_each_refusal_names_its_field(
    policy: Policy, fields: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert expected in codes(policy, request(**fields))


def test_every_reason_is_reported_at_once(policy: Policy) -> None:
    found = codes(
        policy, request(group_by={"date": "day", "holder_name": "value"}, measures=["x.y"])
    )
    assert [c for c, _ in found] == ["level_too_fine", "identifier_used", "unknown_measure"]


def test_build_plan_raises_typed_errors(policy: Policy) -> None:
    hierarchies = load_hierarchies(policy, EXAMPLES)
    with pytest.raises(PolicyViolation) as refused:
        build_plan(policy, hierarchies, request(group_by={"date": "day"}))
    assert refused.value.field == "group_by.date"
    with pytest.raises(InvalidRequest):
        build_plan(policy, hierarchies, request(group_by={"nope": "value"}))


def test_a_policy_that_releases_an_identifier_is_refused(policy: Policy) -> None:
    body = policy.model_dump(by_alias=True)
    body["release"]["dimensions"]["holder_name"] = "value"
    bad = Policy.model_validate(body)
    with pytest.raises(InvalidRequest, match="never released"):
        check_policy(bad, load_hierarchies(bad, EXAMPLES))


def test_malformed_files_name_the_field(tmp_path: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "dataset: {subject: x}\nrelease: {dimensions: {a: value}, protection: {k: 1}}\n"
    )
    with pytest.raises(InvalidRequest) as error:
        parse(Policy, read_document(path))
    assert error.value.field == "release.protection.k"
    path.write_text("dataset: [unclosed\n")
    with pytest.raises(InvalidRequest, match="line"):
        read_document(path)


@pytest.mark.parametrize("width", [float("inf"), float("nan"), 0, -10])
def test_band_widths_are_finite_and_positive(width: float) -> None:
    with pytest.raises(HierarchyError) as refused:
        BandHierarchy("income", parse(BandSpec, {"bands": [10, width]}).bands)
    assert refused.value.field == "hierarchies.income.bands"


@pytest.mark.parametrize(
    ("protection", "measures", "field"),
    [
        ({"k": 5, "dominance": {"percent": 85, "measure": "nope"}}, None, "dominance"),
        ({"k": 5, "p_percent": {"p": 10, "measure": "age"}}, None, "p_percent"),
        ({"k": 5, "p_percent": {"p": 10, "measure": "amount"}}, {"amount": ["count"]}, "p_percent"),
        ({"preset": "insee"}, {}, "dominance"),
    ],
)
def test_a_rule_must_read_a_measure_the_release_sums(
    policy: Policy, protection: dict[str, Any], measures: dict[str, Any] | None, field: str
) -> None:
    release = policy.release.model_dump(by_alias=True)
    release["protection"] = protection
    if measures is not None:
        release["measures"] = measures
    bad = Policy.model_validate({**policy.model_dump(by_alias=True), "release": release})
    with pytest.raises(InvalidRequest) as refused:
        check_policy(bad, load_hierarchies(bad, EXAMPLES))
    assert refused.value.field == f"release.protection.{field}.measure"
    assert "amount" in refused.value.detail or "none" in refused.value.detail


def test_an_aggregate_release_needs_a_format(policy: Policy) -> None:
    release = {**policy.release.model_dump(by_alias=True), "formats": []}
    with pytest.raises(InvalidRequest) as refused:
        parse(Policy, {**policy.model_dump(by_alias=True), "release": release})
    assert refused.value.field == "release.formats"

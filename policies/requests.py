"""Checking a policy against itself and an extract request against a policy, then planning.

Checks collect every reason at once (a denied decision lists them all); :func:`build_plan`
raises the first one as a typed error for callers that stop at the first problem.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from anonymization.errors import HierarchyError, InvalidRequest, PartageError, PolicyViolation
from anonymization.hierarchies import CategoricalHierarchy, Hierarchy, MappingHierarchy
from anonymization.plan import AggregatePlan, Dimension, Filter, Measure
from policies.models import AGGREGATES, ExtractRequest, Policy
from policies.ranges import Bound, misaligned, parse_range, takes_ranges

# Reasons whose cause is a malformed request rather than a request the policy refuses.
MALFORMED = {"unknown_column", "unknown_level", "unknown_measure", "invalid_filter"}


class Reason(BaseModel):
    """One machine-readable reason for refusing a request."""

    model_config = ConfigDict(frozen=True)
    code: str
    field: str
    detail: str

    def error(self) -> PartageError:
        """The typed error this reason raises."""
        kind = InvalidRequest if self.code in MALFORMED else PolicyViolation
        return kind(self.detail, field=self.field, code=self.code)


def check_policy(policy: Policy, hierarchies: dict[str, Hierarchy]) -> None:
    """Raise if the release block contradicts the dataset block (roles, levels, measures)."""
    dataset, release = policy.dataset, policy.release
    private = {dataset.subject, *dataset.identifiers}
    for column, level in release.dimensions.items():
        field = f"release.dimensions.{column}"
        if column in private:
            raise InvalidRequest(
                f"{column!r} is the subject or an identifier and is never released",
                field=field,
                code="identifier_used",
            )
        spec = dataset.columns.get(column)
        if spec is None or spec.role == "measure":
            raise InvalidRequest(
                f"{column!r} is not a dimension of the dataset", field=field, code="unknown_column"
            )
        _check_level(hierarchies[column], level, spec.level, field)
    for column, aggregates in release.measures.items():
        spec = dataset.columns.get(column)
        if spec is None or spec.role != "measure":
            raise InvalidRequest(
                f"{column!r} is not a measure of the dataset",
                field=f"release.measures.{column}",
                code="unknown_measure",
            )
        if not aggregates:
            raise InvalidRequest("list at least one aggregate", field=f"release.measures.{column}")
    for column in release.allowed_filters():
        if column not in release.dimensions and column not in dataset.columns:
            raise InvalidRequest(
                f"{column!r} is not a column of the dataset",
                field="release.filters",
                code="unknown_column",
            )
        if column in private:
            raise InvalidRequest(
                f"{column!r} is an identifier", field="release.filters", code="identifier_used"
            )
    _check_rule_measures(policy)


def _check_rule_measures(policy: Policy) -> None:
    """Raise unless each dominance or p% rule reads a measure the release sums."""
    summed = _summed(policy)
    protection = policy.release.protection.resolve(policy.presets)
    for name in ("dominance", "p_percent"):
        rule = getattr(protection, name)
        if rule is None or (summed and rule.measure in (None, *summed)):
            continue
        wanted = (
            f"{rule.measure!r} is not a measure the release sums"
            if rule.measure
            else "it needs a measure the release sums"
        )
        raise InvalidRequest(
            f"the {name} rule reads a measure released with `sum` or `mean`: {wanted} "
            f"(summed: {', '.join(map(repr, summed)) or 'none'})",
            field=f"release.protection.{name}.measure",
            code="unknown_measure",
        )


def _summed(policy: Policy) -> list[str]:
    """The measures the release sums (`sum` or `mean`), which protection rules can read."""
    return [c for c, aggs in policy.release.measures.items() if "sum" in aggs or "mean" in aggs]


def _check_level(hierarchy: Hierarchy, level: str, source: str | None, field: str) -> None:
    try:
        hierarchy.index(level)
        if source is not None and not hierarchy.is_coarser_or_equal(level, source):
            raise InvalidRequest(
                f"level {level!r} is finer than the stored level {source!r}",
                field=field,
                code="unknown_level",
            )
    except PartageError as error:
        raise InvalidRequest(error.detail, field=field, code="unknown_level") from None


def check_request(
    policy: Policy, hierarchies: dict[str, Hierarchy], request: ExtractRequest
) -> list[Reason]:
    """Every reason the policy refuses ``request``; empty when it is allowed. A range bound
    that does not parse is a malformed request, raised first (InvalidRequest naming it)."""
    ranges = {
        column: parse_range(hierarchies[column], spec, f"filters.{column}")
        for column, spec in request.filters.items()
        if column in hierarchies and takes_ranges(hierarchies[column])
    }
    _check_filter_values(policy, hierarchies, request)
    return [
        *_group_by_reasons(policy, hierarchies, request),
        *_measure_reasons(policy, request),
        *_filter_reasons(policy, hierarchies, request, ranges),
        *_format_reasons(policy, request),
    ]


def _check_filter_values(
    policy: Policy, hierarchies: dict[str, Hierarchy], request: ExtractRequest
) -> None:
    """Raise InvalidRequest naming an ``in`` value that the column's ladder does not have at
    the filter's level (département ``99``, a typo in a custom hierarchy's label): it would
    match nothing and release an empty table. Plain categories have no list to check."""
    for column, spec in request.filters.items():
        hierarchy = hierarchies.get(column)
        if not spec.values or not isinstance(hierarchy, MappingHierarchy):
            continue
        if isinstance(hierarchy, CategoricalHierarchy):
            continue
        stored = policy.dataset.columns[column].level if column in policy.dataset.columns else None
        level = spec.level or stored or hierarchy.levels[0]
        if level not in hierarchy.levels:
            continue  # an unknown level is a reason of its own (_filter_reasons)
        try:
            hierarchy.generalize_labels(spec.values, level, level)
        except HierarchyError as error:
            raise InvalidRequest(
                f"{error.detail} at level {level!r}: the filter would match nothing",
                field=f"filters.{column}.in",
                code="value_not_covered",
            ) from None


def _private_reason(policy: Policy, column: str, field: str) -> Reason | None:
    if column in (policy.dataset.subject, *policy.dataset.identifiers):
        return Reason(
            code="identifier_used",
            field=field,
            detail=f"{column!r} is the subject or a direct identifier and is never released",
        )
    return None


def _unusable_reason(
    policy: Policy, hierarchies: dict[str, Hierarchy], column: str, field: str
) -> Reason | None:
    """Why ``column`` can be neither grouped nor filtered on, if it cannot."""
    private = _private_reason(policy, column, field)
    if private is not None or column in hierarchies:
        return private
    return Reason(
        code="unknown_column", field=field, detail=f"{column!r} is not a dimension of the dataset"
    )


def _group_by_reasons(
    policy: Policy, hierarchies: dict[str, Hierarchy], request: ExtractRequest
) -> list[Reason]:
    reasons: list[Reason] = []
    for column, level in request.group_by.items():
        field = f"group_by.{column}"
        unusable = _unusable_reason(policy, hierarchies, column, field)
        if unusable is not None:
            reasons.append(unusable)
        elif column not in policy.release.dimensions:
            reasons.append(
                Reason(
                    code="dimension_not_allowed",
                    field=field,
                    detail=f"the policy does not release {column!r}",
                )
            )
        elif level not in (*hierarchies[column].levels, "*"):
            reasons.append(
                Reason(
                    code="unknown_level",
                    field=field,
                    detail=f"unknown level {level!r}; levels are "
                    f"{', '.join(hierarchies[column].levels)}",
                )
            )
        elif not hierarchies[column].is_coarser_or_equal(level, policy.release.dimensions[column]):
            reasons.append(
                Reason(
                    code="level_too_fine",
                    field=field,
                    detail=f"level {level!r} is finer than the finest allowed, "
                    f"{policy.release.dimensions[column]!r}",
                )
            )
    return reasons


def _measure_reasons(policy: Policy, request: ExtractRequest) -> list[Reason]:
    reasons: list[Reason] = []
    for position, name in enumerate(request.measures):
        field = f"measures[{position}]"
        if name == "subjects":
            continue
        column, _, aggregate = name.rpartition(".")
        private = _private_reason(policy, column, field)
        if private is not None:
            reasons.append(private)
        elif (
            not column
            or aggregate not in AGGREGATES
            or policy.dataset.columns.get(column) is None
            or policy.dataset.columns[column].role != "measure"
        ):
            reasons.append(
                Reason(
                    code="unknown_measure",
                    field=field,
                    detail=f"{name!r} is not `subjects` nor `<measure>.<sum|mean|count>`",
                )
            )
        elif aggregate not in policy.release.measures.get(column, []):
            reasons.append(
                Reason(
                    code="measure_not_allowed",
                    field=field,
                    detail=f"the policy does not release {name!r}",
                )
            )
    return reasons


def _filter_reasons(
    policy: Policy,
    hierarchies: dict[str, Hierarchy],
    request: ExtractRequest,
    ranges: dict[str, tuple[Bound | None, Bound | None]],
) -> list[Reason]:
    reasons: list[Reason] = []
    for column, spec in request.filters.items():
        field = f"filters.{column}"
        unusable = _unusable_reason(policy, hierarchies, column, field)
        if unusable is not None:
            reasons.append(unusable)
        elif column not in policy.release.allowed_filters():
            reasons.append(
                Reason(
                    code="filter_not_allowed",
                    field=field,
                    detail=f"the policy does not allow filtering on {column!r}",
                )
            )
        elif spec.level is not None and spec.level not in hierarchies[column].levels:
            reasons.append(
                Reason(
                    code="unknown_level",
                    field=f"{field}.level",
                    detail=f"unknown level {spec.level!r}",
                )
            )
        elif (spec.low is not None or spec.high is not None) and column not in ranges:
            reasons.append(
                Reason(
                    code="invalid_filter",
                    field=field,
                    detail="`from`/`to` apply to time and numeric columns only",
                )
            )
        elif (
            column in policy.release.dimensions
            and spec.level is not None
            and not hierarchies[column].is_coarser_or_equal(
                spec.level, policy.release.dimensions[column]
            )
        ):
            reasons.append(
                Reason(
                    code="level_too_fine",
                    field=f"{field}.level",
                    detail=f"level {spec.level!r} is finer than the finest allowed",
                )
            )
        elif column in ranges and column in policy.release.dimensions:
            cut = misaligned(column, policy.release.dimensions[column], *ranges[column])
            if cut is not None:
                reasons.append(
                    Reason(code="level_too_fine", field=f"{field}.{cut[0]}", detail=cut[1])
                )
    return reasons


def _format_reasons(policy: Policy, request: ExtractRequest) -> list[Reason]:
    if request.format in policy.release.formats:
        return []
    return [
        Reason(
            code="format_not_allowed",
            field="format",
            detail=f"format {request.format!r} is not allowed; allowed: "
            f"{', '.join(policy.release.formats)}",
        )
    ]


def build_plan(
    policy: Policy, hierarchies: dict[str, Hierarchy], request: ExtractRequest
) -> AggregatePlan:
    """The aggregate plan for an allowed request; raises the first reason otherwise."""
    reasons = check_request(policy, hierarchies, request)
    if reasons:
        raise reasons[0].error()
    columns = policy.dataset.columns

    def source_level(column: str) -> str:
        return columns[column].level or hierarchies[column].levels[0]

    dimensions = tuple(
        Dimension(column, hierarchies[column], source_level(column), level)
        for column, level in request.group_by.items()
    )
    filters = tuple(
        Filter(
            column,
            hierarchies[column],
            source_level(column),
            spec.level or source_level(column),
            tuple(spec.values) if spec.values else None,
            spec.low,
            spec.high,
        )
        for column, spec in request.filters.items()
    )
    measures = tuple(
        Measure(None, "subjects")
        if name == "subjects"
        else Measure(name.rpartition(".")[0], name.rpartition(".")[2])  # type: ignore[arg-type]
        for name in request.measures
    )
    summed = _summed(policy)
    protection = policy.release.protection.resolve(policy.presets).with_measure(
        summed[0] if summed else None
    )
    return AggregatePlan(
        subject=policy.dataset.subject,
        dimensions=dimensions,
        measures=measures,
        protection=protection,
        filters=filters,
        totals=request.totals,
    )

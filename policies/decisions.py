"""The decision: an agreement version, a request, what the partner already used, and the clock
→ *deny* with every reason, or *permit* with the release plan. Pure: the service loads and stores.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from anonymization.hierarchies import Hierarchy
from anonymization.protection import Protection
from policies.models import DatasetSpec, ExtractRequest, Frozen, Policy, ReleaseSpec
from policies.requests import Reason, build_plan, check_request

AgreementStatus = Literal["active", "suspended", "revoked"]
LegalBasis = Literal[
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
]


class Limits(Frozen):
    """What one agreement allows per extract and per calendar month."""

    max_cells: int | None = Field(default=None, ge=1, description="cells per extract")
    extracts_per_month: int | None = Field(default=None, ge=1)


class AgreementTerms(Frozen):
    """The versioned content of a sharing agreement (who, why, until when, what, how)."""

    purpose: str = Field(min_length=3, max_length=2000)
    legal_basis: LegalBasis = Field(description="GDPR article 6(1) basis")
    valid_from: datetime.date = Field(description="first day in force")
    valid_until: datetime.date = Field(description="last day in force (inclusive)")
    release: ReleaseSpec
    limits: Limits = Field(default_factory=Limits)
    retention_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("valid_until")
    @classmethod
    def _after_start(cls, value: datetime.date, info: ValidationInfo) -> datetime.date:
        start = info.data.get("valid_from")
        if isinstance(start, datetime.date) and value <= start:
            raise ValueError("valid_until must be after valid_from")
        return value


class Usage(BaseModel):
    """What the partner already did under this agreement in the current calendar month."""

    model_config = ConfigDict(frozen=True)
    extracts_this_month: int = Field(default=0, ge=0)


class Decision(BaseModel):
    """Permit with a plan (and the estimated number of cells), or deny with reasons."""

    model_config = ConfigDict(frozen=True)
    permit: bool
    reasons: list[Reason] = Field(default_factory=list)
    plan: dict[str, Any] | None = None
    estimated_cells: int | None = None


def status_reasons(
    status: AgreementStatus, terms: AgreementTerms, now: datetime.datetime
) -> list[Reason]:
    """Why the agreement is not active now, if it is not."""
    if status != "active":
        return [
            Reason(
                code=f"agreement_{status}", field="agreement", detail=f"the agreement is {status}"
            )
        ]
    today = now.astimezone(datetime.UTC).date() if now.tzinfo else now.date()
    if today < terms.valid_from:
        return [
            Reason(
                code="agreement_not_yet_valid",
                field="agreement",
                detail=f"the agreement is valid from {terms.valid_from.isoformat()}",
            )
        ]
    if today > terms.valid_until:
        return [
            Reason(
                code="agreement_expired",
                field="agreement",
                detail=f"the agreement expired on {terms.valid_until.isoformat()}",
            )
        ]
    return []


def estimate_cells(request: ExtractRequest, cardinalities: dict[str, dict[str, int]]) -> int:
    """An upper bound of the cells a request yields: the product of each dimension's distinct
    labels at its level, plus every margin when ``totals`` is set."""
    counts = [
        cardinalities.get(column, {}).get(level, 1) if level != "*" else 1
        for column, level in request.group_by.items()
    ]
    if not request.totals:
        return math.prod(counts)
    return math.prod(count + 1 for count in counts)


def decide(
    dataset: DatasetSpec,
    hierarchies: dict[str, Hierarchy],
    status: AgreementStatus,
    terms: AgreementTerms,
    request: ExtractRequest,
    usage: Usage,
    now: datetime.datetime,
    cardinalities: dict[str, dict[str, int]] | None = None,
    presets: dict[str, Protection] | None = None,
) -> Decision:
    """The decision on ``request`` under one agreement version; every reason is reported."""
    policy = Policy(dataset=dataset, presets=presets or {}, release=terms.release)
    reasons = status_reasons(status, terms, now)
    reasons += check_request(policy, hierarchies, request)
    if (
        terms.limits.extracts_per_month is not None
        and usage.extracts_this_month >= terms.limits.extracts_per_month
    ):
        reasons.append(
            Reason(
                code="quota_reached",
                field="agreement.limits.extracts_per_month",
                detail=f"{usage.extracts_this_month} extracts this month, the limit "
                f"is {terms.limits.extracts_per_month}",
            )
        )
    estimated = estimate_cells(request, cardinalities or {})
    limit = terms.limits.max_cells or terms.release.max_cells
    if limit is not None and estimated > limit:
        reasons.append(
            Reason(
                code="too_many_cells",
                field="group_by",
                detail=f"about {estimated} cells, the limit is {limit}",
            )
        )
    if reasons:
        return Decision(permit=False, reasons=reasons, estimated_cells=estimated)
    plan = build_plan(policy, hierarchies, request)
    return Decision(permit=True, plan=plan.describe(), estimated_cells=estimated)

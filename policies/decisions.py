"""The decision: an agreement version, a request, what the partner already used, and the clock
→ *deny* with every reason, or *permit* with the release plan. Pure: the service loads and stores.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from anonymization.errors import PolicyViolation
from anonymization.hierarchies import Hierarchy
from anonymization.protection import Protection
from policies.microdata import MicrodataReleaseSpec, MicrodataRequest, describe
from policies.models import (
    MAX_CELLS,
    DatasetSpec,
    Day,
    ExtractRequest,
    Frozen,
    Policy,
    ReleaseSpec,
)
from policies.requests import Reason, build_plan, check_request
from policies.text import TextRule

MAX_EXTRACTS_PER_MONTH = 1_000_000
AgreementStatus = Literal["active", "suspended", "revoked"]
LegalBasis = Literal[
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
]


def kind_of(value: Any) -> str:
    """The ``kind`` of a release block or a request (``aggregate`` when absent)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in ("aggregate", "microdata") else "aggregate"


AnyRelease = Annotated[
    Annotated[ReleaseSpec, Tag("aggregate")] | Annotated[MicrodataReleaseSpec, Tag("microdata")],
    Discriminator(kind_of),
]
AnyRequest = Annotated[
    Annotated[ExtractRequest, Tag("aggregate")] | Annotated[MicrodataRequest, Tag("microdata")],
    Discriminator(kind_of),
]


class Limits(Frozen):
    """What one agreement allows per extract and per calendar month."""

    max_cells: int | None = Field(
        default=None, ge=1, le=MAX_CELLS, strict=True, description="cells per extract"
    )
    extracts_per_month: int | None = Field(
        default=None, ge=1, le=MAX_EXTRACTS_PER_MONTH, strict=True
    )


class AgreementTerms(Frozen):
    """The versioned content of a sharing agreement (who, why, until when, what, how)."""

    purpose: Annotated[str, AfterValidator(TextRule(3, 2000, multiline=True))] = Field(
        min_length=3, max_length=2000
    )
    legal_basis: LegalBasis = Field(description="GDPR article 6(1) basis")
    valid_from: Day = Field(description="first day in force")
    valid_until: Day = Field(description="last day in force (inclusive)")
    release: AnyRelease = Field(description="`kind: aggregate` (default) or `kind: microdata`")
    limits: Limits = Field(default_factory=Limits)
    retention_days: int = Field(default=30, ge=1, le=3650, strict=True)

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


class Holdings(BaseModel):
    """What the partner already holds of the dataset, each release named: aggregate releases,
    microdata releases under this agreement's pseudonym key, and microdata releases under
    another key (another agreement, so pseudonyms that do not match)."""

    model_config = ConfigDict(frozen=True)
    aggregate: tuple[str, ...] = ()
    microdata: tuple[str, ...] = ()
    other_microdata: tuple[str, ...] = ()

    @classmethod
    def of(cls, aggregate: Iterable[str], microdata: Mapping[str, object], key: object) -> Holdings:
        """What the partner holds, from its aggregate releases' names and its microdata
        releases' names, each with what keyed its pseudonyms: ``key`` for this release's."""
        return cls(
            aggregate=tuple(aggregate),
            microdata=tuple(name for name, held in microdata.items() if held == key),
            other_microdata=tuple(name for name, held in microdata.items() if held != key),
        )


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


class AgreementInvalid(PolicyViolation):
    """Stored terms that no longer pass the checks (written before a bound was tightened):
    nothing is decided under them until an administrator writes a new version."""

    code = "agreement_invalid"

    def __init__(self, source: str, reasons: list[Reason]) -> None:
        fields = ", ".join(reason.field for reason in reasons)
        super().__init__(
            f"{source} no longer passes the agreement checks ({fields}); nothing is released "
            "under it until an administrator writes a new version",
            field=reasons[0].field,
        )
        self.reasons = reasons


def _stored_reason(problem: ErrorDetails) -> Reason:
    # The tag of the release union (aggregate, microdata) names no field.
    parts = [str(part) for part in problem["loc"] if part != "function-after"]
    if parts[:1] == ["release"] and parts[1:2] in (["aggregate"], ["microdata"]):
        del parts[1]
    if problem["type"] == "missing":
        found = "required now, and missing from the stored terms"
    else:
        value = json.dumps(problem["input"], default=str)[:200]
        found = f"the stored {value} no longer passes: {problem['msg']}"
    detail = f"{found}; an administrator must write a new version"
    return Reason(code=AgreementInvalid.code, field=".".join(["agreement", *parts]), detail=detail)


def stored_terms(document: dict[str, Any], source: str) -> AgreementTerms:
    """Terms read back from storage, checked as new ones are: :class:`AgreementInvalid` naming
    every field that fails (``source`` says which version) when they no longer pass."""
    try:
        return AgreementTerms.model_validate(document)
    except ValidationError as error:
        reasons = [_stored_reason(problem) for problem in error.errors()]
        raise AgreementInvalid(source, reasons) from None


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


def kind_reasons(release: ReleaseSpec | MicrodataReleaseSpec, request: Any) -> list[Reason]:
    """Why a request does not fit the agreement's kind of release, if it does not."""
    if release.kind == kind_of(request):
        return []
    wanted = (
        '{"kind": "microdata", "format": ...}'
        if release.kind == "microdata"
        else ("grouping levels and measures, without `kind`")
    )
    return [
        Reason(
            code="wrong_kind",
            field="kind",
            detail=f"this agreement releases {release.kind}, not {kind_of(request)}: send {wanted}",
        )
    ]


def _named(releases: tuple[str, ...]) -> str:
    shown = ", ".join(releases[:3])
    return shown + (f" and {len(releases) - 3} more" if len(releases) > 3 else "")


def holding_reasons(kind: str, holdings: Holdings, field: str = "agreement") -> list[Reason]:
    """Why a release of ``kind`` cannot be protected jointly with what the partner holds of the
    same data, if it cannot: aggregates are checked against aggregates, and microdata against
    microdata under the same pseudonym key; across kinds, or against records whose pseudonyms
    do not match (exact sensitive values can still join them), nothing proves the pair safe."""
    one_kind = "so a partner gets one kind of release per dataset"
    conflicts = (
        [
            (
                "holds_microdata",
                holdings.microdata + holdings.other_microdata,
                "microdata of this data",
                f"aggregates are not protected jointly with records, {one_kind}",
            )
        ]
        if kind == "aggregate"
        else [
            (
                "holds_aggregates",
                holdings.aggregate,
                "aggregate releases of this data",
                f"records are not protected jointly with aggregates, {one_kind}",
            ),
            (
                "holds_other_microdata",
                holdings.other_microdata,
                "microdata of this data under another pseudonym key",
                "their pseudonyms do not match these, but exact sensitive values could join the "
                "records, so nothing proves the pair safe; release under the agreement (any "
                "version) that made them",
            ),
        ]
    )
    for code, held, what, why in conflicts:
        if held:
            detail = f"the partner holds {what} ({_named(held)}): {why}"
            return [Reason(code=code, field=field, detail=detail)]
    return []


def _quota_reasons(terms: AgreementTerms, usage: Usage) -> list[Reason]:
    limit = terms.limits.extracts_per_month
    if limit is None or usage.extracts_this_month < limit:
        return []
    return [
        Reason(
            code="quota_reached",
            field="agreement.limits.extracts_per_month",
            detail=f"{usage.extracts_this_month} extracts this month, the limit is {limit}",
        )
    ]


def _decide_microdata(
    release: MicrodataReleaseSpec,
    request: MicrodataRequest,
    reasons: list[Reason],
    quota: list[Reason],
) -> Decision:
    if request.format not in release.formats:
        reasons.append(
            Reason(
                code="format_not_allowed",
                field="format",
                detail=f"format {request.format!r} is not allowed; allowed: "
                f"{', '.join(release.formats)}",
            )
        )
    reasons += quota
    if reasons:
        return Decision(permit=False, reasons=reasons)
    return Decision(permit=True, plan=describe(release, request))


def decide(
    dataset: DatasetSpec,
    hierarchies: dict[str, Hierarchy],
    status: AgreementStatus,
    terms: AgreementTerms,
    request: ExtractRequest | MicrodataRequest,
    usage: Usage,
    now: datetime.datetime,
    cardinalities: dict[str, dict[str, int]] | None = None,
    presets: dict[str, Protection] | None = None,
    holdings: Holdings | None = None,
) -> Decision:
    """The decision on ``request`` under one agreement version, given what the partner already
    holds of the data; every reason is reported."""
    reasons = status_reasons(status, terms, now)
    mismatch = kind_reasons(terms.release, request)
    if mismatch:
        return Decision(permit=False, reasons=reasons + mismatch + _quota_reasons(terms, usage))
    reasons += holding_reasons(terms.release.kind, holdings or Holdings())
    if isinstance(terms.release, MicrodataReleaseSpec):
        assert isinstance(request, MicrodataRequest)
        return _decide_microdata(terms.release, request, reasons, _quota_reasons(terms, usage))
    assert isinstance(request, ExtractRequest)
    policy = Policy(dataset=dataset, presets=presets or {}, release=terms.release)
    reasons += check_request(policy, hierarchies, request) + _quota_reasons(terms, usage)
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

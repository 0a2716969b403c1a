"""Request and response bodies of ``/agreements``."""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from policies.models import ReleaseSpec

# GDPR article 6(1) (a) to (f).
LegalBasis = Literal[
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
]
Status = Literal["active", "suspended", "revoked"]

RELEASE_EXAMPLE = {
    "dimensions": {"departement": "departement", "date": "month", "card_country": "value"},
    "measures": {"amount": ["sum", "mean"]},
    "protection": {"k": 10, "dominance": {"n": 1, "percent": 85}},
    "formats": ["csv", "parquet"],
    "max_cells": 5000,
}


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extracts_per_month: int | None = Field(default=None, ge=1, examples=[20])


class Terms(BaseModel):
    """What an agreement allows; each change of terms is a new version."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=1, max_length=2000, examples=["Tourism flows by month"])
    legal_basis: LegalBasis = Field(description="GDPR art. 6(1) basis", examples=["public_task"])
    valid_from: datetime.date
    valid_until: datetime.date
    release: ReleaseSpec = Field(
        description="the policy's `release` block: dimensions at their finest level, "
        "measures, filters, protection, formats and max cells per extract",
        examples=[RELEASE_EXAMPLE],
    )
    limits: Limits = Field(default_factory=Limits)
    retention_days: int = Field(default=30, ge=1, le=3650, description="how long releases are kept")

    @field_validator("valid_until")
    @classmethod
    def _after_start(cls, value: datetime.date, info: ValidationInfo) -> datetime.date:
        start = info.data.get("valid_from")
        if start is not None and value <= start:
            raise ValueError("valid_until must be after valid_from")
        return value


class AgreementCreate(Terms):
    partner_id: uuid.UUID
    dataset_id: uuid.UUID


class AgreementUpdate(Terms):
    version: int = Field(ge=1, description="the version these changes were made from")


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, description="if given, refused (409) unless it is the current version"
    )


class AgreementVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agreement_id: uuid.UUID
    version: int
    change: str
    changed_by: str
    status: Status
    purpose: str
    legal_basis: LegalBasis
    valid_from: datetime.date
    valid_until: datetime.date
    release: dict[str, Any]
    limits: dict[str, Any]
    retention_days: int
    created_at: datetime.datetime


class AgreementOut(AgreementVersionOut):
    id: uuid.UUID
    partner_id: uuid.UUID
    dataset_id: uuid.UUID
    in_force: bool = Field(description="active and inside its validity window today")
    updated_at: datetime.datetime

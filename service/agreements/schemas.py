"""Request and response bodies of ``/agreements``: the policy's ``AgreementTerms`` plus who,
on what, and at which version."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.decisions import AgreementStatus, AgreementTerms, LegalBasis
from policies.requests import Reason
from service.bounds import DB_INT_MAX

TERMS_EXAMPLE: dict[str, Any] = {
    "purpose": "Monthly tourism spending by département",
    "legal_basis": "public_task",
    "valid_from": "2025-01-01",
    "valid_until": "2026-12-31",
    "release": {
        "dimensions": {"departement": "departement", "date": "month", "card_country": "value"},
        "measures": {"amount": ["sum", "mean"]},
        "protection": {"k": 10, "dominance": {"n": 1, "percent": 85}},
        "formats": ["csv", "parquet"],
    },
    "limits": {"max_cells": 5000, "extracts_per_month": 20},
    "retention_days": 30,
}
_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


class AgreementCreate(AgreementTerms):
    """A new agreement: its partner, its dataset and its first terms."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"partner_id": _ID, "dataset_id": _ID, **TERMS_EXAMPLE}]}
    )

    partner_id: uuid.UUID
    dataset_id: uuid.UUID


class AgreementUpdate(AgreementTerms):
    """New terms, made from ``version``: refused (409) if the agreement has moved on since."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 1, **TERMS_EXAMPLE}]})

    version: int = Field(
        ge=1, le=DB_INT_MAX, strict=True, description="the version these changes were made from"
    )


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None,
        ge=1,
        le=DB_INT_MAX,
        strict=True,
        description="if given, refused (409) unless it is the current version",
    )


class AgreementVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agreement_id: uuid.UUID
    version: int
    change: str = Field(description="create, update, suspend, resume or revoke")
    changed_by: str | None = Field(
        description="client_id of the administrator who made the change (null for a partner: "
        "administrators' client ids are not shown to partners)"
    )
    status: AgreementStatus
    purpose: str
    legal_basis: LegalBasis
    valid_from: datetime.date
    valid_until: datetime.date
    release: dict[str, Any]
    limits: dict[str, Any]
    retention_days: int
    created_at: datetime.datetime
    valid: bool = Field(
        description="the stored terms pass today's checks; if not, nothing is released under "
        "this version and `problems` says why (a bound tightened since it was written)"
    )
    problems: list[Reason] = Field(
        description="each field of the stored terms that no longer passes (code agreement_invalid)"
    )

    @classmethod
    def stored_fields(cls) -> list[str]:
        """The fields read from the stored version as they are."""
        return [name for name in cls.model_fields if name not in ("valid", "problems")]


class AgreementOut(AgreementVersionOut):
    id: uuid.UUID
    partner_id: uuid.UUID
    dataset_id: uuid.UUID
    in_force: bool = Field(description="active and inside its validity window today")
    updated_at: datetime.datetime

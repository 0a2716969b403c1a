"""Request and response bodies of the partners' side: decisions, extracts, manifests."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from policies.decisions import kind_of
from policies.microdata import MicrodataRequest
from policies.models import ExtractRequest

ExtractStatus = Literal["queued", "running", "succeeded", "failed", "expired"]

REQUEST_EXAMPLE: dict[str, Any] = {
    "group_by": {"departement": "departement", "date": "month"},
    "measures": ["subjects", "amount.sum"],
    "filters": {"date": {"from": "2025-01-01", "to": "2025-06-30"}},
    "totals": True,
    "format": "csv",
}


class ExtractRequestBody(ExtractRequest):
    """The engine's request format: grouping levels, measures, filters, margins, format."""

    model_config = ConfigDict(json_schema_extra={"examples": [REQUEST_EXAMPLE]})


class MicrodataRequestBody(MicrodataRequest):
    """A microdata agreement's request: ``kind: microdata`` and the format."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"kind": "microdata"}]})


RequestBody = Annotated[
    Annotated[ExtractRequestBody, Tag("aggregate")]
    | Annotated[MicrodataRequestBody, Tag("microdata")],
    Discriminator(kind_of),
]


class ExtractOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agreement_id: uuid.UUID
    agreement_version: int
    status: ExtractStatus
    progress: str = Field(description="the job's current step")
    failure_code: str | None = None
    failure: str | None = Field(default=None, description="why the job failed")
    attempts: int
    request: dict[str, Any]
    formats: list[str] = Field(description="formats that can be downloaded")
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    expires_at: datetime.datetime | None


class SignatureOut(BaseModel):
    alg: Literal["Ed25519"]
    kid: str = Field(description="the key's id in `/.well-known/jwks.json`")
    value: str = Field(description="base64url Ed25519 signature of the manifest's canonical JSON")


class ManifestOut(BaseModel):
    """The signed manifest; the signature covers every other member (RFC 8785 canonical JSON)."""

    model_config = ConfigDict(extra="allow")

    manifest_version: int
    extract_id: uuid.UUID
    agreement: dict[str, Any]
    dataset: dict[str, Any]
    request: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = Field(description="format → sha256 and bytes")
    signature: SignatureOut

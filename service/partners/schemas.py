"""Request and response bodies of ``/partners``."""

from __future__ import annotations

import datetime
import uuid

from pydantic import BaseModel, ConfigDict, Field


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Office de tourisme de Lyon"])
    contact_email: str | None = Field(
        default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$", examples=["data@example.org"]
    )


class PartnerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    contact_email: str | None
    client_id: str
    scopes: list[str]
    created_at: datetime.datetime


class PartnerCredentials(BaseModel):
    """A partner with its OAuth2 client secret, shown this once only."""

    partner: PartnerOut
    client_id: str
    client_secret: str

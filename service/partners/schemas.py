"""Request and response bodies of ``/partners``."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from policies.text import Name, TextRule


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(
        examples=["Office de tourisme de Lyon"],
        description="unique, ignoring case, spacing and Unicode normalisation",
    )
    contact_email: Annotated[str, AfterValidator(TextRule(3, 320))] | None = Field(
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

"""Response bodies of ``/audit``."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime.datetime | None = Field(description="null where the stored time is unreadable")
    actor: str = Field(description="client_id that acted (or `service`, `cli`)")
    action: str = Field(examples=["release.produced"])
    object: str = Field(examples=["extract:3fa85f64-5717-4562-b3fc-2c963f66afa6"])
    details: dict[str, Any] | None = Field(
        description="null where the stored details are unreadable"
    )
    prev_hash: str
    hash: str
    problem: str | None = Field(
        default=None, description="why the entry does not read, if it does not (it was altered)"
    )


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class ChainReportOut(BaseModel):
    intact: bool
    entries: int
    head_seq: int
    signatures: int
    broken_at: int | None = Field(description="the first entry that fails, if any")
    problem: str | None

"""Extracts: a partner's request under one agreement version, run as a job into a release.

The row is the job's state (queued, running, succeeded, failed, expired) and, once succeeded,
the release's record: its encrypted files (one per format, each data key wrapped), their
hashes and the signed manifest. The record stays after the files expire.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin

QUEUED, RUNNING, SUCCEEDED, FAILED, EXPIRED = "queued", "running", "succeeded", "failed", "expired"
# Extracts that count against the monthly quota (a failed one gave the partner nothing).
COUNTED = (QUEUED, RUNNING, SUCCEEDED, EXPIRED)


class Extract(IdMixin, Base):
    __tablename__ = "extract"
    __table_args__ = (UniqueConstraint("client_id", "idempotency_key"),)

    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agreement.id"), index=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner.id"), index=True)
    agreement_version: Mapped[int]
    client_id: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_hash: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    progress: Mapped[str] = mapped_column(String(64), default=QUEUED)
    failure_code: Mapped[str | None] = mapped_column(String(64), default=None)
    failure: Mapped[str | None] = mapped_column(String(2000), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    # format → {"sha256", "bytes", "key_id", "wrapped"} (the wrapped data key, base64)
    files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

"""Agreements and their versions: every change writes a new, immutable version.

The ``agreement`` row is the head (who, on what, its kind, current status and version number,
which SQLAlchemy checks on every update: optimistic locking); ``agreement_version`` rows keep
each version's full terms, so a release can always name the version it was made under.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin, utcnow

ACTIVE, SUSPENDED, REVOKED = "active", "suspended", "revoked"
LIVE_STATUSES = (ACTIVE, SUSPENDED)


class Agreement(IdMixin, Base):
    __tablename__ = "agreement"

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner.id"), index=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dataset.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    # `aggregate` or `microdata`, fixed at creation.
    kind: Mapped[str] = mapped_column(String(16), default="aggregate")
    # Microdata only: the secret the subject's pseudonyms are keyed with, wrapped by the storage
    # key like a data key; kept across versions (stable pseudonyms), never returned.
    pseudonym_key_id: Mapped[str | None] = mapped_column(String(64), default=None)
    pseudonym_key: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class AgreementVersion(IdMixin, Base):
    __tablename__ = "agreement_version"
    __table_args__ = (UniqueConstraint("agreement_id", "version"),)

    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agreement.id"), index=True)
    version: Mapped[int]
    change: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(2000))
    legal_basis: Mapped[str] = mapped_column(String(32))
    valid_from: Mapped[datetime.date]
    valid_until: Mapped[datetime.date]
    release: Mapped[dict[str, Any]] = mapped_column(JSON)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    retention_days: Mapped[int]

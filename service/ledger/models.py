"""The ledger in the service's database: every release a partner received, with its true cells
(the data holder's record, never shown to the partner), written with the release's record."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin


class LedgerEntry(IdMixin, Base):
    __tablename__ = "ledger_entry"

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner.id"), index=True)
    extract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("extract.id"), unique=True)
    # The dataset's fingerprint: the same data registered twice is still the same population.
    dataset: Mapped[str] = mapped_column(String(80), index=True)
    # The fields of anonymization.ledger.HeldRelease, as its SQLite ledger stores them.
    request: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text)
    dimensions: Mapped[str] = mapped_column(Text)
    totals: Mapped[int]
    additive: Mapped[str] = mapped_column(Text)
    nonnegative: Mapped[str] = mapped_column(Text)
    cells: Mapped[str] = mapped_column(Text)


class MicrodataLedgerEntry(IdMixin, Base):
    """A microdata release a partner received: only each released pseudonym's class number (what
    the partner can join other releases on), never a value of the data."""

    __tablename__ = "microdata_ledger_entry"

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner.id"), index=True)
    extract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("extract.id"), unique=True)
    dataset: Mapped[str] = mapped_column(String(80), index=True)
    # Which pseudonym key made the pseudonyms (anonymization.microdata.linkage.link_scope):
    # releases of one scope can be joined record by record.
    scope: Mapped[str] = mapped_column(String(64), index=True)
    k: Mapped[int]
    classes: Mapped[str] = mapped_column(Text)

"""Partners: the organisations that receive extracts under agreements."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin, NameKeyMixin


class Partner(NameKeyMixin, IdMixin, Base):
    __tablename__ = "partner"

    contact_email: Mapped[str | None] = mapped_column(String(320), default=None)

"""Partners: the organisations that receive extracts under agreements."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin


class Partner(IdMixin, Base):
    __tablename__ = "partner"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    contact_email: Mapped[str | None] = mapped_column(String(320), default=None)

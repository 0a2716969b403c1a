"""Partners: the organisations that receive extracts under agreements."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, validates

from policies.text import name_key
from service.db import Base, IdMixin


class Partner(IdMixin, Base):
    __tablename__ = "partner"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Names are unique as people read them (case, spacing, Unicode form aside): see name_key.
    name_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    contact_email: Mapped[str | None] = mapped_column(String(320), default=None)

    @validates("name")
    def _keep_key(self, _: str, name: str) -> str:
        self.name_key = name_key(name)
        return name

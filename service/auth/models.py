"""OAuth2 clients: an administrator's or a partner's credentials (the secret is stored hashed)."""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, IdMixin

SCOPE_ADMIN = "admin"
SCOPE_EXTRACTS_READ = "extracts:read"
SCOPE_EXTRACTS_REQUEST = "extracts:request"
ALL_SCOPES = (SCOPE_ADMIN, SCOPE_EXTRACTS_READ, SCOPE_EXTRACTS_REQUEST)
PARTNER_SCOPES = (SCOPE_EXTRACTS_READ, SCOPE_EXTRACTS_REQUEST)
CLIENT_ID_MAX = 64


class OAuthClient(IdMixin, Base):
    __tablename__ = "oauth_client"

    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(200))
    partner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("partner.id", ondelete="CASCADE"), unique=True
    )
    # Bumped when the secret is rotated: tokens carry it, so older tokens stop working.
    secret_generation: Mapped[int] = mapped_column(default=1)
    disabled_at: Mapped[datetime.datetime | None] = mapped_column(default=None)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())

"""Every mapped model, imported in one place so the metadata is complete (Alembic, tests)."""

from service.auth.models import OAuthClient
from service.db import Base
from service.partners.models import Partner

__all__ = ["Base", "OAuthClient", "Partner"]

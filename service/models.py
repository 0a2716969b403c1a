"""Every mapped model, imported in one place so the metadata is complete (Alembic, tests)."""

from service.agreements.models import Agreement, AgreementVersion
from service.auth.models import OAuthClient
from service.datasets.models import Dataset
from service.db import Base
from service.partners.models import Partner

__all__ = ["Agreement", "AgreementVersion", "Base", "Dataset", "OAuthClient", "Partner"]

"""Every mapped model, imported in one place so the metadata is complete (Alembic, tests)."""

from service.agreements.models import Agreement, AgreementVersion
from service.audit.models import AuditEvent, AuditHead, AuditSignature
from service.auth.models import OAuthClient
from service.datasets.models import Dataset
from service.db import Base
from service.extracts.models import Extract
from service.ledger.models import LedgerEntry, MicrodataLedgerEntry
from service.partners.models import Partner

__all__ = [
    "Agreement",
    "AgreementVersion",
    "AuditEvent",
    "AuditHead",
    "AuditSignature",
    "Base",
    "Dataset",
    "Extract",
    "LedgerEntry",
    "MicrodataLedgerEntry",
    "OAuthClient",
    "Partner",
]

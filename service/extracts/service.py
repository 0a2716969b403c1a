"""Decisions and extracts: every query is filtered to what the caller may see (a partner: the
extracts under its own agreements), the decision is the policy layer's, and every denial,
request and download is recorded in the audit log in the same transaction.
"""

from __future__ import annotations

import calendar
import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Select, false, func, select
from sqlalchemy.orm import Session

from anonymization.hierarchies import Hierarchy
from policies.decisions import (
    AgreementInvalid,
    AgreementStatus,
    AgreementTerms,
    Decision,
    Usage,
    decide,
)
from policies.files import digest
from policies.microdata import MicrodataRequest
from policies.models import DatasetSpec, ExtractRequest, OutputFormat
from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.audit import service as audit
from service.auth.deps import Caller
from service.datasets import service as datasets
from service.datasets.models import Dataset
from service.db import utcnow
from service.errors import (
    Conflict,
    Denied,
    Gone,
    NotFound,
    StoredFileUnreadable,
    TooManyRequests,
)
from service.extracts import files
from service.extracts.models import COUNTED, EXPIRED, FAILED, SUCCEEDED, Extract
from service.extracts.schemas import ExtractOut
from service.ledger import service as ledger
from service.storage import EncryptedStore, StorageError

log = logging.getLogger(__name__)


def visible(caller: Caller) -> Select[Extract]:
    """The extracts ``caller`` may see: all for an admin, its own for a partner."""
    statement = select(Extract)
    if caller.is_admin:
        return statement
    if caller.partner_id is None:
        return statement.where(false())
    return statement.where(Extract.partner_id == caller.partner_id)


def get(session: Session, caller: Caller, extract_id: uuid.UUID) -> Extract:
    found = session.scalars(visible(caller).where(Extract.id == extract_id)).one_or_none()
    if found is None:
        raise NotFound(f"no extract {extract_id}", field="extract_id")
    return found


def search(
    session: Session,
    caller: Caller,
    agreement_id: uuid.UUID | None,
    status: str | None,
    limit: int,
) -> list[Extract]:
    statement = visible(caller).order_by(Extract.created_at.desc()).limit(limit)
    if agreement_id is not None:
        statement = statement.where(Extract.agreement_id == agreement_id)
    if status is not None:
        statement = statement.where(Extract.status == status)
    return list(session.scalars(statement))


def to_out(extract: Extract) -> ExtractOut:
    return ExtractOut.model_validate(
        {
            **{
                name: getattr(extract, name)
                for name in ExtractOut.model_fields
                if name != "formats"
            },
            "formats": sorted(extract.files) if extract.status == SUCCEEDED else [],
        }
    )


@dataclass(frozen=True)
class Context:
    """Everything the decision reads: the agreement at its version, and its dataset."""

    agreement: Agreement
    version: int
    terms: AgreementTerms
    dataset: Dataset
    spec: DatasetSpec
    hierarchies: dict[str, Hierarchy]


def context(session: Session, agreement: Agreement, version: int | None = None) -> Context:
    """The agreement's terms at ``version`` (default current) and its dataset's policy."""
    stored = agreements.get_version(session, agreement, version or agreement.version)
    dataset = session.get(Dataset, agreement.dataset_id)
    assert dataset is not None
    policy = datasets.policy_of(dataset)
    return Context(
        agreement,
        stored.version,
        agreements.terms_of(stored),
        dataset,
        policy.dataset,
        datasets.hierarchies_of(dataset),
    )


def _month_start(now: datetime.datetime) -> datetime.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def usage(session: Session, agreement_id: uuid.UUID, now: datetime.datetime) -> Usage:
    """Extracts counted against the agreement's quota this calendar month (UTC)."""
    count = session.scalar(
        select(func.count())
        .select_from(Extract)
        .where(
            Extract.agreement_id == agreement_id,
            Extract.status.in_(COUNTED),
            Extract.created_at >= _month_start(now),
        )
    )
    return Usage(extracts_this_month=int(count or 0))


def evaluate(
    session: Session, agreement: Agreement, request: ExtractRequest | MicrodataRequest
) -> Decision:
    """The policy's decision on ``request`` now, under the agreement's current version and
    given what the partner holds of the data; denied, naming its fields, if that version no
    longer passes the checks."""
    try:
        found = context(session, agreement)
    except AgreementInvalid as error:
        return Decision(permit=False, reasons=error.reasons)
    now = utcnow()
    return decide(
        found.spec,
        found.hierarchies,
        cast(AgreementStatus, found.agreement.status),
        found.terms,
        request,
        usage(session, found.agreement.id, now),
        now,
        found.dataset.cardinalities,
        holdings=ledger.holdings(
            session, found.agreement.partner_id, found.dataset.fingerprint, found.agreement.id
        ),
    )


def _seconds_to_next_month(now: datetime.datetime) -> int:
    days = calendar.monthrange(now.year, now.month)[1]
    return int((_month_start(now) + datetime.timedelta(days=days) - now).total_seconds())


def _deny(
    session: Session, caller: Caller, agreement: Agreement, decision: Decision
) -> Denied | TooManyRequests:
    """Audit the denial; the error to answer with (429 when the monthly quota is reached)."""
    reasons = [reason.model_dump() for reason in decision.reasons]
    audit.append(
        session,
        caller.client_id,
        "decision.denied",
        f"agreement:{agreement.id}",
        {"version": agreement.version, "reasons": [reason["code"] for reason in reasons]},
    )
    denied = Denied(reasons)
    if any(reason.code == "quota_reached" for reason in decision.reasons):
        return TooManyRequests(
            denied.detail,
            retry_after=_seconds_to_next_month(utcnow()),
            field="agreement.limits.extracts_per_month",
        )
    return denied


def dry_run(
    session: Session,
    caller: Caller,
    agreement_id: uuid.UUID,
    request: ExtractRequest | MicrodataRequest,
) -> Decision:
    """The decision without releasing anything; a denial is audited."""
    agreement = agreements.get(session, caller, agreement_id)
    decision = evaluate(session, agreement, request)
    if not decision.permit:
        _deny(session, caller, agreement, decision)
    return decision


def _request_digest(agreement_id: uuid.UUID, request: ExtractRequest | MicrodataRequest) -> str:
    return digest(
        {
            "agreement_id": str(agreement_id),
            "request": request.model_dump(mode="json", by_alias=True),
        }
    )


def _replay(session: Session, caller: Caller, key: str, request_hash: str) -> Extract | None:
    """The extract made earlier with this idempotency key; 409 if its body differed."""
    earlier = session.scalars(
        select(Extract).where(Extract.client_id == caller.client_id, Extract.idempotency_key == key)
    ).one_or_none()
    if earlier is not None and earlier.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was used with another request body",
            field="Idempotency-Key",
            code="idempotency_key_reused",
        )
    return earlier


def request_extract(
    session: Session,
    caller: Caller,
    agreement_id: uuid.UUID,
    request: ExtractRequest | MicrodataRequest,
    idempotency_key: str | None,
) -> Extract | Denied | TooManyRequests:
    """A queued extract for a permitted request, or the denial to answer with.

    A denial is returned, not raised: its audit event commits with the request. The audit
    head's lock is taken first, so the quota counts and idempotency checks of concurrent
    requests run one after the other.
    """
    agreement = agreements.get(session, caller, agreement_id)
    audit.lock_head(session)
    request_hash = _request_digest(agreement.id, request)
    if idempotency_key is not None:
        earlier = _replay(session, caller, idempotency_key, request_hash)
        if earlier is not None:
            return earlier
    decision = evaluate(session, agreement, request)
    if not decision.permit:
        return _deny(session, caller, agreement, decision)
    extract = Extract(
        id=uuid.uuid4(),
        agreement_id=agreement.id,
        partner_id=agreement.partner_id,
        agreement_version=agreement.version,
        client_id=caller.client_id,
        request=request.model_dump(mode="json", by_alias=True, exclude_none=True),
        request_hash=request_hash,
        idempotency_key=idempotency_key,
    )
    session.add(extract)
    session.flush()
    audit.append(
        session,
        caller.client_id,
        "extract.requested",
        f"extract:{extract.id}",
        {
            "agreement_id": str(agreement.id),
            "version": agreement.version,
            "estimated_cells": decision.estimated_cells,
        },
    )
    return extract


def _ready(extract: Extract, expired_ok: bool = False) -> None:
    if extract.status == EXPIRED and expired_ok:
        return
    if extract.status == EXPIRED:
        raise Gone(f"extract {extract.id} expired on {extract.expires_at}", field="extract_id")
    if extract.status == FAILED:
        raise Conflict(
            f"extract {extract.id} failed: {extract.failure}", field="extract_id", code="failed"
        )
    if extract.status != SUCCEEDED:
        raise Conflict(
            f"extract {extract.id} is {extract.status}; poll GET /extracts/{extract.id}",
            field="extract_id",
            code="not_ready",
        )


def download(
    session: Session,
    store: EncryptedStore,
    caller: Caller,
    extract_id: uuid.UUID,
    fmt: OutputFormat | None,
) -> tuple[OutputFormat, bytes]:
    """The decrypted release in ``fmt`` (default: the requested format); audited."""
    extract = get(session, caller, extract_id)
    _ready(extract)
    chosen = fmt or cast(OutputFormat, extract.request.get("format", "csv"))
    if chosen not in extract.files:
        raise NotFound(
            f"format {chosen!r} was not produced; available: {', '.join(sorted(extract.files))}",
            field="format",
        )
    try:
        data = files.read(store, extract, chosen)
    except StorageError as error:
        session.refresh(extract)
        _ready(extract)  # expired since it was read: its files were deleted meanwhile
        log.error("extract %s: %s", extract.id, error)
        raise StoredFileUnreadable(
            f"the {chosen} file of extract {extract.id} cannot be read (damaged or replaced "
            "on disk); the administrators' log has the detail",
            field="extract_id",
        ) from None
    audit.append(
        session,
        caller.client_id,
        "release.downloaded",
        f"extract:{extract.id}",
        {"format": chosen, "sha256": extract.files[chosen]["sha256"]},
    )
    return chosen, data


def manifest(session: Session, caller: Caller, extract_id: uuid.UUID) -> dict[str, object]:
    """The signed manifest (kept after the release's files expire)."""
    extract = get(session, caller, extract_id)
    _ready(extract, expired_ok=True)
    assert extract.manifest is not None
    return extract.manifest

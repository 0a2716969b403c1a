"""Extract jobs: a pool of worker threads inside the service; each job's state is its row.

A worker claims a queued row (``running``, one more attempt), computes the release outside any
transaction, writes every format encrypted (fsynced, renamed into place), then commits the row
as ``succeeded`` together with its audit event. Until that commit nothing is downloadable, and
the files' data keys exist only in that commit, so a crash in between leaves nothing readable.
What happens to the rows between jobs (claiming, recovery after a crash, expiry) is in
:mod:`service.extracts.upkeep`.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from anonymization.errors import AuditFailure, PartageError, PolicyViolation
from anonymization.microdata import agreement_key
from anonymization.microdata.linkage import HeldMicrodata, link_scope
from anonymization.release import Held, Release, run_release, serialize
from policies.decisions import AgreementStatus, AgreementTerms, holding_reasons, status_reasons
from policies.microdata import MicrodataReleaseSpec
from policies.models import ExtractRequest, OutputFormat, Policy
from policies.requests import build_plan
from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.audit import service as audit
from service.config import Settings
from service.datasets import service as datasets
from service.datasets.models import Dataset
from service.datasets.reading import release_source
from service.db import utcnow
from service.extracts import files, manifest, microdata
from service.extracts.models import FAILED, QUEUED, RUNNING, SUCCEEDED, Extract
from service.extracts.service import Context, context
from service.keys import SigningKeys
from service.ledger import service as ledger
from service.storage import EncryptedStore, StorageError

log = logging.getLogger(__name__)
SERVICE = "service"


@dataclass(frozen=True)
class Runtime:
    """What a job needs from the app: database, store, keys and settings; ``stopping`` is set
    when the service shuts down."""

    sessions: sessionmaker[Session]
    store: EncryptedStore
    keys: SigningKeys
    settings: Settings
    stopping: threading.Event = field(default_factory=threading.Event)


class Stopped(Exception):
    """The service is shutting down: the job stops at its next progress report."""


@dataclass(frozen=True)
class Produced:
    """A release computed and written, waiting to be committed; ``held`` is how many releases
    of the same data the partner held when it was protected. ``release`` is what goes to the
    ledger: an aggregate release, or a microdata release's classes; ``counts`` go to the audit
    event."""

    release: Release | HeldMicrodata
    files: dict[str, dict[str, Any]]
    manifest: dict[str, Any]
    expires_at: datetime.datetime
    dataset: str
    held: int
    counts: dict[str, Any]


def _progress(runtime: Runtime, extract_id: uuid.UUID, step: str) -> None:
    """Record the job's step; stop the job if the service is shutting down, or if its
    agreement stopped being active meanwhile (suspended, revoked, expired) or its dataset was
    deleted."""
    if runtime.stopping.is_set():
        raise Stopped
    with runtime.sessions() as session:
        session.execute(
            update(Extract)
            .where(Extract.id == extract_id, Extract.status == RUNNING)
            .values(progress=step[:64])
        )
        session.commit()
        extract = session.get(Extract, extract_id)
        if extract is not None:
            _still_permitted(session, extract)


def _timed_progress(runtime: Runtime, extract_id: uuid.UUID) -> Callable[[str], None]:
    """The job's progress callback: records each step, and stops the job once it has run
    longer than ``job_time_limit_seconds`` (the engine reports at least once a second while it
    solves)."""
    limit = runtime.settings.job_time_limit_seconds
    deadline = time.monotonic() + limit

    def step(message: str) -> None:
        if time.monotonic() > deadline:
            raise PartageError(
                f"the release was still being protected after {limit:g} s ({message}); "
                "request coarser levels, fewer dimensions or no totals",
                field="request",
                code="time_limit",
            )
        _progress(runtime, extract_id, message)

    return step


def _load(session: Session, extract: Extract) -> Context:
    """The agreement version the extract was permitted under; refused if no longer active."""
    agreement = session.get(Agreement, extract.agreement_id)
    assert agreement is not None
    found = context(session, agreement, extract.agreement_version)
    _refuse_if_stopped(agreement, found.terms, found.dataset)
    return found


def _still_permitted(session: Session, extract: Extract, lock: bool = False) -> None:
    """Refuse the job if its agreement stopped being active (suspended, revoked, expired) or
    its dataset was deleted since it was claimed; ``lock`` holds the agreement's row until the
    caller commits, so a revocation commits before or after that commit, not during it."""
    agreement = session.get(Agreement, extract.agreement_id, with_for_update=lock)
    assert agreement is not None
    stored = agreements.get_version(session, agreement, extract.agreement_version)
    dataset = session.get(Dataset, agreement.dataset_id)
    assert dataset is not None
    _refuse_if_stopped(agreement, agreements.terms_of(stored), dataset)


def _refuse_if_stopped(agreement: Agreement, terms: AgreementTerms, dataset: Dataset) -> None:
    status = cast(AgreementStatus, agreement.status)
    for reason in status_reasons(status, terms, utcnow()):
        raise PolicyViolation(reason.detail, field=reason.field, code=reason.code)
    if dataset.wrapped_key is None:
        raise PolicyViolation("the dataset was deleted", field="dataset", code="dataset_deleted")


def _refuse_if_held_elsewhere(session: Session, extract: Extract, found: Context) -> None:
    """Refuse the job if the partner came to hold, since the request, a release of the data that
    this one cannot be protected jointly with (the other kind, or microdata under another
    agreement)."""
    fingerprint = found.dataset.fingerprint
    holdings = ledger.holdings(session, extract.partner_id, fingerprint, extract.agreement_id)
    for reason in holding_reasons(found.terms.release.kind, holdings):
        raise reason.error()


def _held(session: Session, extract: Extract, dataset: str) -> list[Held]:
    """What the partner holds of this data, each with its plan rebuilt under the agreement
    version it was released under."""
    held = []
    for entry, origin_id in ledger.held_by_extract(session, extract.partner_id, dataset):
        origin = session.get(Extract, origin_id)
        agreement = session.get(Agreement, origin.agreement_id) if origin else None
        assert origin is not None and agreement is not None
        terms = context(session, agreement, origin.agreement_version)
        policy = Policy(dataset=terms.spec, release=terms.terms.release)
        request = ExtractRequest.model_validate(entry.request)
        held.append((entry, build_plan(policy, terms.hierarchies, request)))
    return held


def _noise_secret(runtime: Runtime, dataset_id: uuid.UUID) -> bytes:
    """The dataset's noise secret (committed at once if this is its first use)."""
    with runtime.sessions() as session:
        secret = datasets.noise_secret(session, runtime.store, dataset_id)
        session.commit()
    return secret


def _written(
    runtime: Runtime,
    extract: Extract,
    found: Context,
    outputs: dict[OutputFormat, bytes],
    summary: dict[str, Any],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], datetime.datetime]:
    """Write every format encrypted; their records, the signed manifest and the expiry."""
    _progress(runtime, extract.id, "writing")
    written = files.write(runtime.store, extract.id, outputs)
    expires_at = utcnow() + datetime.timedelta(days=found.terms.retention_days)
    document = manifest.build(
        extract,
        {"id": str(found.dataset.id), "fingerprint": found.dataset.fingerprint},
        summary,
        written,
        runtime.settings.token_issuer,
        expires_at,
    )
    return written, manifest.signed(runtime.keys, document), expires_at


def _produce_microdata(
    runtime: Runtime, extract: Extract, found: Context, key: bytes, held: int
) -> Produced:
    """A microdata release, protected jointly with the partner's microdata releases under the
    same pseudonym key (the same agreement, whatever its version)."""
    release = found.terms.release
    assert isinstance(release, MicrodataReleaseSpec)
    scope = link_scope(key)
    with runtime.sessions() as session:
        linkable = ledger.held_microdata(session, extract.partner_id, scope)
    _progress(runtime, extract.id, "generalizing")
    content = datasets.read_content(runtime.store, found.dataset)
    result = microdata.release(content, found.dataset, found.spec, release, key, linkable)
    assert result.classes is not None
    classes = HeldMicrodata(found.dataset.fingerprint, scope, release.protection.k, result.classes)
    outputs = {fmt: serialize(result.table, fmt) for fmt in release.formats}
    summary = microdata.summary(result, release)
    written, signed, expires_at = _written(runtime, extract, found, outputs, summary)
    counts = {
        "records": result.manifest["records_released"],
        "suppressed": result.manifest["records_suppressed"],
    }
    return Produced(classes, written, signed, expires_at, found.dataset.fingerprint, held, counts)


def produce(runtime: Runtime, extract_id: uuid.UUID) -> Produced:
    """Compute the release (jointly protected with what the partner holds) and write its
    files; nothing is committed here."""
    with runtime.sessions() as session:
        extract = session.get(Extract, extract_id)
        assert extract is not None
        found = _load(session, extract)
        _refuse_if_held_elsewhere(session, extract, found)
        held = _held(session, extract, found.dataset.fingerprint)
        count = ledger.count_held(session, extract.partner_id, found.dataset.fingerprint)
        is_microdata = isinstance(found.terms.release, MicrodataReleaseSpec)
        secret = (
            agreements.pseudonym_secret(runtime.store, found.agreement) if is_microdata else b""
        )
        session.expunge_all()
    if is_microdata:
        key = agreement_key(secret, str(found.agreement.id))
        return _produce_microdata(runtime, extract, found, key, count)
    content = datasets.read_content(runtime.store, found.dataset)
    source = release_source(content, found.dataset.file_format, datasets.policy_of(found.dataset))
    assert not isinstance(found.terms.release, MicrodataReleaseSpec)
    policy = Policy(dataset=found.spec, release=found.terms.release)
    request = ExtractRequest.model_validate(extract.request)
    plan = build_plan(policy, found.hierarchies, request)
    noise = _noise_secret(runtime, found.dataset.id) if plan.protection.noise else None
    report = _timed_progress(runtime, extract_id)
    release = run_release(source, plan, report, held, noise_secret=noise)
    outputs = {fmt: serialize(release.table, fmt) for fmt in policy.release.formats}
    written, signed, expires_at = _written(runtime, extract, found, outputs, release.summary())
    counts = {name: release.counts()[name] for name in ("cells", "suppressed")}
    return Produced(release, written, signed, expires_at, found.dataset.fingerprint, count, counts)


def commit_release(runtime: Runtime, extract_id: uuid.UUID, produced: Produced) -> None:
    """In one transaction: the row succeeded, with its files' keys, manifest, ledger entry and
    audit event."""
    with runtime.sessions() as session:
        extract = session.get(Extract, extract_id)
        if extract is None or extract.status != RUNNING:
            raise PartageError("the job was taken over meanwhile", code="interrupted")
        _still_permitted(session, extract, lock=True)
        if ledger.count_held(session, extract.partner_id, produced.dataset) != produced.held:
            raise PartageError(
                "another release to this partner was committed meanwhile; request again",
                code="ledger_changed",
            )
        if isinstance(produced.release, HeldMicrodata):
            ledger.record_microdata(session, extract.partner_id, extract.id, produced.release)
        else:
            held = produced.release.held(produced.dataset, extract.request)
            ledger.DatabaseLedger(session, extract.id).record(str(extract.partner_id), held)
        extract.status, extract.progress = SUCCEEDED, "done"
        extract.files, extract.manifest = produced.files, produced.manifest
        extract.finished_at, extract.expires_at = utcnow(), produced.expires_at
        audit.append(
            session,
            SERVICE,
            "release.produced",
            f"extract:{extract.id}",
            {
                "requested_by": extract.client_id,
                "agreement_id": str(extract.agreement_id),
                "version": extract.agreement_version,
                **produced.counts,
                "sha256": {fmt: record["sha256"] for fmt, record in produced.files.items()},
            },
        )
        session.commit()


# What the partner reads when the audit refuses a release. The engine's own message names the
# protected cell and the interval the partner could narrow it to, which tells how close to a
# bound the true value lies: that detail goes to the administrators' audit log only.
WITHHELD = (
    "the release could not be protected against what it would let be derived (with the "
    "releases already received); the administrators' audit log holds the detail"
)


# Failures whose engine message quotes values of the data (raw values, often the rarest): the
# partner reads the column and what is wrong, the audit log the values.
QUOTING_DATA = {
    "value_not_covered": "is not covered by the hierarchy the agreement names",
    "reserved_label": "has the label '*' (which marks margins) below the top of its hierarchy",
    "malformed_value": "is not what its hierarchy reads (a date for the time hierarchy, a "
    "number for numeric bands)",
}


def _partner_detail(error: PartageError) -> str:
    """What the partner reads of a failure: its detail, unless that quotes the data."""
    if error.code in QUOTING_DATA:
        return (
            f"a value of {error.field!r} {QUOTING_DATA[error.code]}; the administrators' audit "
            "log names the values"
        )
    return error.detail


def mark_failed(
    session: Session, extract: Extract, code: str, detail: str, logged: str | None = None
) -> None:
    """Fail the job: ``detail`` for the partner, ``logged`` (default: the same) in the audit log."""
    extract.status, extract.progress = FAILED, "failed"
    extract.failure_code, extract.failure = code, detail[:2000]
    extract.finished_at = utcnow()
    audit.append(
        session,
        SERVICE,
        "release.failed",
        f"extract:{extract.id}",
        {"code": code, "detail": detail if logged is None else logged},
    )


def _fail(
    runtime: Runtime, extract_id: uuid.UUID, code: str, detail: str, logged: str | None = None
) -> None:
    """Fail the job and delete its files, unless it is no longer running: a commit that took
    effect though it raised (the acknowledgement lost) left a release whose files stay."""
    with runtime.sessions() as session:
        extract = session.get(Extract, extract_id)
        if extract is None or extract.status != RUNNING:
            return
        mark_failed(session, extract, code, detail, logged)
        session.commit()
    files.delete(runtime.store, extract_id)


def _stopped(runtime: Runtime, extract_id: uuid.UUID) -> None:
    """Queue the job again, its attempt given back: the service stopped it, not a fault."""
    files.delete(runtime.store, extract_id)
    with runtime.sessions() as session:
        session.execute(
            update(Extract)
            .where(Extract.id == extract_id, Extract.status == RUNNING)
            .values(
                status=QUEUED,
                progress="queued again: the service stopped",
                attempts=Extract.attempts - 1,
            )
        )
        session.commit()


def run_job(runtime: Runtime, extract_id: uuid.UUID) -> None:
    """Run one claimed job to ``succeeded`` or ``failed`` (with the reason), or back to
    ``queued`` if the service stops meanwhile."""
    try:
        commit_release(runtime, extract_id, produce(runtime, extract_id))
    except Stopped:
        _stopped(runtime, extract_id)
    except AuditFailure as error:
        _fail(runtime, extract_id, error.code, WITHHELD, logged=error.detail)
    except PartageError as error:
        _fail(runtime, extract_id, error.code, _partner_detail(error), logged=error.detail)
    except StorageError as error:
        _fail(runtime, extract_id, "storage", str(error))
    except Exception:
        log.exception("extract %s failed", extract_id)
        _fail(runtime, extract_id, "internal", "the release failed on an internal error")

"""The extract rows' upkeep around the jobs (:mod:`service.extracts.jobs`), run by the worker
pool's loop and by the CLI: claiming queued rows (one job per partner at a time), recovering
rows left ``running`` (by a crash: queued again, or failed once out of attempts; while the
service runs, by a job that could not record its outcome), expiring releases past their
retention, and signing the audit log's head.
"""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import select, update

from service.audit import service as audit
from service.db import utcnow
from service.extracts import files, jobs
from service.extracts.jobs import SERVICE, Runtime
from service.extracts.models import EXPIRED, QUEUED, RUNNING, SUCCEEDED, Extract


def claim(runtime: Runtime, limit: int) -> list[uuid.UUID]:
    """Mark up to ``limit`` queued extracts running (oldest first) and return their ids.

    One job per partner at a time: each release is protected against every release the partner
    already holds, so two of its releases must not be protected without each other.
    """
    claimed: list[uuid.UUID] = []
    with runtime.sessions() as session:
        busy = set(session.scalars(select(Extract.partner_id).where(Extract.status == RUNNING)))
        queued = session.execute(
            select(Extract.id, Extract.partner_id)
            .where(Extract.status == QUEUED)
            .order_by(Extract.created_at)
        ).all()
        for extract_id, partner_id in queued:
            if len(claimed) >= limit or partner_id in busy:
                continue
            taken = session.execute(
                update(Extract)
                .where(Extract.id == extract_id, Extract.status == QUEUED)
                .values(
                    status=RUNNING,
                    progress="starting",
                    attempts=Extract.attempts + 1,
                    started_at=utcnow(),
                )
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(extract_id)
                busy.add(partner_id)
        session.commit()
    return claimed


def recover(
    runtime: Runtime,
    running: frozenset[uuid.UUID] = frozenset(),
    cause: str = "the service stopped during the job",
) -> tuple[int, int]:
    """Queue again the jobs left running that are not in ``running`` (by a crash, or by a job
    whose outcome could not be recorded), or fail those out of attempts."""
    requeued = failed = 0
    with runtime.sessions() as session:
        interrupted = session.scalars(
            select(Extract).where(Extract.status == RUNNING, Extract.id.not_in(running))
        ).all()
        for extract in interrupted:
            files.delete(runtime.store, extract.id)
            if extract.attempts < runtime.settings.job_attempts:
                extract.status, extract.progress = QUEUED, "queued again after an interruption"
                requeued += 1
            else:
                jobs.mark_failed(session, extract, "interrupted", cause)
                failed += 1
        session.commit()
    return requeued, failed


def expire_due(runtime: Runtime, now: datetime.datetime | None = None) -> int:
    """Expire releases past their retention: record kept, keys dropped, files deleted (and
    those an earlier sweep or a failed job could not delete)."""
    now = now or utcnow()
    with runtime.sessions() as session:
        due = session.scalars(
            select(Extract).where(Extract.status == SUCCEEDED, Extract.expires_at <= now)
        ).all()
        for extract in due:
            extract.status, extract.progress = EXPIRED, "expired"
            files.forget_keys(extract)
            audit.append(session, SERVICE, "release.expired", f"extract:{extract.id}")
        session.commit()
        expired = [extract.id for extract in due]
    for extract_id in expired:
        files.delete(runtime.store, extract_id)
    with runtime.sessions() as session:
        files.sweep(session, runtime.store)
    return len(expired)


def sign_audit_head(runtime: Runtime) -> int | None:
    """Sign the audit log's head if it moved; the sequence signed."""
    with runtime.sessions() as session:
        signed = audit.sign_head(session, runtime.keys)
        session.commit()
    return signed.seq if signed else None

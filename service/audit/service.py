"""Appending to the hash-chained audit log, signing its head, and recomputing the chain.

Each entry's hash is SHA-256 over the canonical JSON (RFC 8785) of the entry, previous hash
included, so changing, removing or reordering any entry breaks every later link. Appends run in
the caller's transaction (the event commits or rolls back with the action it records) and take
the head row's write lock first, so concurrent appends queue instead of forking the chain.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import rfc8785
from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from service.audit.models import GENESIS, HEAD_ID, AuditEvent, AuditHead, AuditSignature
from service.db import utcnow
from service.keys import SigningKeys
from service.signatures import SignatureError, sign, verify

PAGE = 1000
_HEAD = cast(Table, AuditHead.__table__)


def entry_hash(event: AuditEvent) -> str:
    """SHA-256 (hex) of the entry's canonical JSON, its previous hash included."""
    body: dict[str, Any] = {
        "seq": event.seq,
        "at": event.at.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "object": event.object,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def lock_head(session: Session) -> tuple[int, str]:
    """Take the head's write lock (held until commit) and return its sequence and hash.

    The update changes nothing but locks the row on PostgreSQL and the database on SQLite.
    """
    row = session.execute(
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ID)
        .values(seq=_HEAD.c.seq)
        .returning(_HEAD.c.seq, _HEAD.c.hash)
    ).one_or_none()
    if row is None:
        session.execute(insert(_HEAD).values(id=HEAD_ID, seq=0, hash=GENESIS))
        return 0, GENESIS
    return int(row.seq), str(row.hash)


def append(
    session: Session, actor: str, action: str, obj: str, details: dict[str, Any] | None = None
) -> AuditEvent:
    """Add one event at the end of the chain, in the caller's transaction."""
    seq, previous = lock_head(session)
    event = AuditEvent(
        seq=seq + 1,
        at=utcnow(),
        actor=actor,
        action=action,
        object=obj,
        details=details or {},
        prev_hash=previous,
    )
    event.hash = entry_hash(event)
    session.add(event)
    session.execute(
        update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=event.seq, hash=event.hash)
    )
    session.flush()
    return event


def head_document(seq: int, digest: str) -> dict[str, Any]:
    """What a head signature covers."""
    return {"audit_head": {"seq": seq, "hash": digest}}


def sign_head(session: Session, keys: SigningKeys) -> AuditSignature | None:
    """Sign the current head unless it is empty or already signed."""
    seq, digest = lock_head(session)
    if seq == 0 or session.get(AuditSignature, seq) is not None:
        return None
    signature = sign(keys, head_document(seq, digest))
    signed = AuditSignature(
        seq=seq, hash=digest, kid=signature["kid"], signature=signature["value"]
    )
    session.add(signed)
    session.flush()
    return signed


def search(
    session: Session,
    action: str | None,
    actor: str | None,
    obj: str | None,
    after: int,
    limit: int,
) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if actor is not None:
        statement = statement.where(AuditEvent.actor == actor)
    if obj is not None:
        statement = statement.where(AuditEvent.object == obj)
    return list(session.scalars(statement.limit(limit)))


@dataclass(frozen=True)
class ChainReport:
    """The outcome of recomputing the chain: ``broken_at`` is the first entry that fails."""

    entries: int
    head_seq: int
    signatures: int
    broken_at: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def _entries(session: Session) -> Iterator[AuditEvent]:
    after = 0
    while True:
        page = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(PAGE)
        ).all()
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].seq
        for event in page:
            session.expunge(event)


def _walk(session: Session) -> tuple[int, str, int | None, str | None]:
    """(entries that hold, last good hash, first broken entry, problem)."""
    expected, previous = 1, GENESIS
    for event in _entries(session):
        problem = None
        if event.seq != expected:
            return expected - 1, previous, expected, f"entry {expected} is missing"
        if event.prev_hash != previous:
            problem = f"entry {event.seq} does not follow entry {expected - 1}"
        elif entry_hash(event) != event.hash:
            problem = f"entry {event.seq} was altered (its hash does not match its content)"
        if problem is not None:
            return expected - 1, previous, event.seq, problem
        expected, previous = expected + 1, event.hash
    return expected - 1, previous, None, None


def verify_chain(session: Session, jwks: dict[str, Any]) -> ChainReport:
    """Recompute every link, compare with the head, and check every head signature."""
    entries, last_hash, broken_at, problem = _walk(session)
    head = session.get(AuditHead, HEAD_ID)
    head_seq = head.seq if head else 0
    signatures = list(session.scalars(select(AuditSignature).order_by(AuditSignature.seq)))
    if problem is not None:
        return ChainReport(entries, head_seq, len(signatures), broken_at, problem)
    if head_seq != entries or (head is not None and head.hash != last_hash):
        return ChainReport(
            entries,
            head_seq,
            len(signatures),
            entries + 1,
            f"the chain ends at entry {entries} but its head is at {head_seq} (entries removed)",
        )
    for signed in signatures:
        event = session.get(AuditEvent, signed.seq)
        try:
            if event is None or event.hash != signed.hash:
                raise SignatureError(f"the head signed at entry {signed.seq} is not in the chain")
            verify(
                jwks,
                head_document(signed.seq, signed.hash),
                {"alg": "Ed25519", "kid": signed.kid, "value": signed.signature},
            )
        except SignatureError as error:
            return ChainReport(entries, head_seq, len(signatures), signed.seq, str(error))
    return ChainReport(entries, head_seq, len(signatures))

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
from pathlib import Path
from typing import Any, cast

import rfc8785
from sqlalchemy import Select, Table, func, insert, select, update
from sqlalchemy.orm import Session

from anonymization.errors import PartageError
from service.audit import anchor
from service.audit.models import GENESIS, HEAD_ID, AuditEvent, AuditHead, AuditSignature
from service.db import utcnow
from service.keys import SigningKeys
from service.signatures import SignatureError, sign, verify

PAGE = 1000
# Where a walk of the whole chain starts: before entry 1.
ORIGIN = anchor.SignedHead(0, GENESIS)
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


class ChainBroken(PartageError):
    """The chain no longer holds the head signed last: the signer will not sign past it."""

    code = "audit_chain_broken"


def sign_head(session: Session, keys: SigningKeys) -> AuditSignature | None:
    """Sign the current head unless it is empty or already signed, once the chain is checked
    from the head signed last (kept outside the database) to this one; the file then moves to
    this head. Refused (:class:`ChainBroken`) if the chain no longer holds that head."""
    path = anchor.path_in(keys.keys_dir)
    try:
        last = anchor.read(path) or ORIGIN
    except anchor.AnchorError as error:
        raise ChainBroken(f"{error}; not signing", field=str(path)) from None
    # The long walk runs before the head's lock, which every append waits for.
    unlocked = anchor.SignedHead(*_head(session))
    if unlocked.seq == 0 or session.get(AuditSignature, unlocked.seq) is not None:
        return None
    _check_walk(session, last, unlocked, path)
    seq, digest = lock_head(session)
    if seq == 0 or session.get(AuditSignature, seq) is not None:
        return None
    _check_walk(session, unlocked, anchor.SignedHead(seq, digest), path)
    signature = sign(keys, head_document(seq, digest))
    signed = AuditSignature(
        seq=seq, hash=digest, kid=signature["kid"], signature=signature["value"]
    )
    session.add(signed)
    session.flush()
    # Written under the head's lock, so two signers move the file in the chain's order.
    anchor.write(path, anchor.SignedHead(seq, digest), signature)
    return signed


def _check_walk(
    session: Session, start: anchor.SignedHead, head: anchor.SignedHead, path: Path
) -> None:
    """Refuse to sign unless the chain links ``start`` to ``head``."""
    _, walked, broken_at, problem = _walk(session, head.seq, start)
    if problem is None and walked != head.hash:
        broken_at, problem = head.seq, f"entry {head.seq} is not the chain's head"
    if problem is not None:
        raise ChainBroken(
            f"the chain from entry {start.seq} to its head is broken at entry {broken_at} "
            f"({problem}); not signing: run `partage audit-log verify`",
            field=str(path),
        )


def search(
    session: Session,
    action: str | None,
    actor: str | None,
    obj: str | None,
    after: int,
    limit: int,
) -> list[AuditEvent | Unreadable]:
    """Events after ``after``, oldest first, filtered; an entry whose stored time or details no
    longer read as their types is listed as :class:`Unreadable` rather than failing the page."""
    statement = select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if actor is not None:
        statement = statement.where(AuditEvent.actor == actor)
    if obj is not None:
        statement = statement.where(AuditEvent.object == obj)
    statement = statement.limit(limit)
    try:
        return list(session.scalars(statement))
    except (ValueError, TypeError):
        return [
            event if event is not None else _unreadable(session, seq)
            for seq, event in _each(session, statement)
        ]


@dataclass(frozen=True)
class Unreadable:
    """An entry whose stored time or details do not read as their types (SQLite keeps any text
    there): listed with what does read, and why the rest does not."""

    seq: int
    actor: str
    action: str
    object: str
    prev_hash: str
    hash: str
    at: None = None
    details: None = None
    problem: str = "its stored time or details do not read: the entry was altered (see verify)"


def _unreadable(session: Session, seq: int) -> Unreadable:
    """The columns of entry ``seq`` that read whatever is stored (text)."""
    row = session.execute(
        select(
            AuditEvent.seq,
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.object,
            AuditEvent.prev_hash,
            AuditEvent.hash,
        ).where(AuditEvent.seq == seq)
    ).one()
    return Unreadable(*row)


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


def _head(session: Session) -> tuple[int, str]:
    """The head as committed now (read past the session's identity map)."""
    row = session.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID)).first()
    return (int(row.seq), str(row.hash)) if row else (0, GENESIS)


def _entries(session: Session, after: int, last: int) -> Iterator[tuple[int, AuditEvent | None]]:
    """(seq, entry) after ``after`` up to ``last``, in order; the entry is None where its stored
    content does not read as its type (SQLite keeps any text in a JSON or a time column)."""
    while True:
        statement = (
            select(AuditEvent)
            .where(AuditEvent.seq > after, AuditEvent.seq <= last)
            .order_by(AuditEvent.seq)
            .limit(PAGE)
        )
        try:
            page = [(event.seq, event) for event in session.scalars(statement)]
        except (ValueError, TypeError):
            yield from _one_by_one(session, statement)
            return
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]
        for _, event in page:
            session.expunge(event)


def _one_by_one(
    session: Session, statement: Select[AuditEvent]
) -> Iterator[tuple[int, AuditEvent | None]]:
    """The page of ``statement`` read entry by entry, up to the first that cannot be read."""
    for seq, event in _each(session, statement):
        yield seq, event
        if event is None:
            return


def _each(
    session: Session, statement: Select[AuditEvent]
) -> Iterator[tuple[int, AuditEvent | None]]:
    """Each entry of ``statement`` read alone: (seq, entry), the entry None where its stored
    content does not read as its type."""
    seqs = statement.with_only_columns(AuditEvent.seq)
    for seq in list(session.scalars(seqs)):
        try:
            event = session.scalars(select(AuditEvent).where(AuditEvent.seq == seq)).one()
        except (ValueError, TypeError):
            yield seq, None
            continue
        yield seq, event


def _walk(
    session: Session, last: int, start: anchor.SignedHead = ORIGIN
) -> tuple[int, str, int | None, str | None]:
    """Recompute the links from entry ``start`` (whose hash it checks) up to entry ``last``:
    (entries that hold, last good hash, first broken entry, problem)."""
    if start.seq > last:
        return last, "", last + 1, f"the chain ends at entry {last}: entries removed"
    if start.seq > 0:
        held = next(_entries(session, start.seq - 1, start.seq), (start.seq, None))[1]
        if held is None or held.hash != start.hash:
            return start.seq - 1, "", start.seq, f"entry {start.seq} is not the one signed"
    expected, previous = start.seq + 1, start.hash
    for seq, event in _entries(session, start.seq, last):
        if seq != expected:
            return expected - 1, previous, expected, f"entry {expected} is missing"
        problem = None
        if event is None:
            problem = f"entry {seq} was altered (its stored content cannot be read)"
        elif event.prev_hash != previous:
            problem = f"entry {seq} does not follow entry {expected - 1}"
        elif entry_hash(event) != event.hash:
            problem = f"entry {seq} was altered (its hash does not match its content)"
        if problem is not None or event is None:
            return expected - 1, previous, seq, problem
        expected, previous = expected + 1, event.hash
    return expected - 1, previous, None, None


def _ends_at_head(
    session: Session, entries: int, last_hash: str, head: tuple[int, str]
) -> tuple[int | None, str | None]:
    """Whether the chain walked ends at the head read before the walk, and nothing lies past the
    head now (entries appended meanwhile moved it past them): (broken entry, problem)."""
    head_seq, head_hash = head
    if entries < head_seq:
        return entries + 1, (
            f"the chain ends at entry {entries} but its head is at {head_seq} (entries removed)"
        )
    if head_hash != last_hash:
        return entries, f"entry {entries} is not the chain's head (the entry or the head altered)"
    beyond = session.scalar(select(func.max(AuditEvent.seq))) or 0
    now, _ = _head(session)
    if beyond > now:
        return now + 1, f"entry {now + 1} lies past the chain's head at {now} (added)"
    return None, None


def _holds_signed_head(
    session: Session, keys: SigningKeys, head_seq: int
) -> tuple[int | None, str | None]:
    """Whether the chain walked up to ``head_seq`` holds the head signed last, as kept outside
    the database: (broken entry, problem)."""
    path = anchor.path_in(keys.keys_dir)
    try:
        last = anchor.read(path)
    except anchor.AnchorError as error:
        return None, str(error)
    if last is None:
        return None, None
    if last.seq > head_seq:
        return head_seq + 1, (
            f"the chain ends at entry {head_seq} but its head was signed at entry {last.seq} "
            f"({path}): entries removed"
        )
    event = session.get(AuditEvent, last.seq)
    if event is None or event.hash != last.hash:
        return last.seq, (
            f"entry {last.seq} is not the one signed ({path}): the chain was rewritten"
        )
    return None, None


def verify_chain(session: Session, keys: SigningKeys) -> ChainReport:
    """Recompute every link up to the head, check that the chain holds the head signed last
    (kept outside the database) and every head signature in the database.

    The head is read first: entries appended while the walk runs lie past it and are left to
    the next verification, so a busy service is not reported broken."""
    head = _head(session)
    entries, last_hash, broken_at, problem = _walk(session, head[0])
    if problem is None:
        broken_at, problem = _ends_at_head(session, entries, last_hash, head)
    if problem is None:
        broken_at, problem = _holds_signed_head(session, keys, head[0])
    signatures = list(session.scalars(select(AuditSignature).order_by(AuditSignature.seq)))
    if problem is not None:
        return ChainReport(entries, head[0], len(signatures), broken_at, problem)
    jwks = keys.jwks()
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
            return ChainReport(entries, head[0], len(signatures), signed.seq, str(error))
    return ChainReport(entries, head[0], len(signatures))

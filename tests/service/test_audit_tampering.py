"""Attacks on the audit log by someone who can write the database: any one character changed
in any entry, entries swapped, removed or inserted, the whole chain rewritten with fresh hashes
or its tail cut (signatures deleted too), and verifications running while the service appends
(which must never be reported broken)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from service.audit import service as audit
from service.audit.models import GENESIS, AuditEvent, AuditHead, AuditSignature
from service.cli import app as cli
from service.config import Settings, get_settings

FIELDS = ("at", "actor", "action", "object", "details", "prev_hash", "hash")
DETAILS: list[dict[str, Any]] = [
    {},
    {"code": "k", "cells": 12},
    {"name": "Département du Nord — 59", "nested": {"list": [1, 2.5, None, True]}},
    {"sha256": {"csv": "ab" * 32}},
    {"detail": 'quote " and backslash \\ and tab \t'},
    {"amount": -0.125, "big": 9007199254740991},
]


def _chain(app: FastAPI) -> None:
    with app.state.sessionmaker() as session:
        for number, details in enumerate(DETAILS):
            audit.append(session, f"ptg_client{number}", "test.action", f"thing:{number}", details)
        session.commit()


def _report(app: FastAPI) -> audit.ChainReport:
    with app.state.sessionmaker() as session:
        return audit.verify_chain(session, app.state.signing_keys)


def _content(app: FastAPI, seq: int) -> tuple[str, str] | None:
    """What the entry means (the body its hash covers) and its stored hash; None if unreadable."""
    with app.state.sessionmaker() as session:
        try:
            event = session.get(AuditEvent, seq)
        except (ValueError, TypeError):
            return None
        assert event is not None
        return audit.entry_hash(event), event.hash


def _store(app: FastAPI, seq: int, field: str, value: str) -> None:
    """Write ``value`` as the stored text of ``field`` (PostgreSQL parses it as the column's
    type, as a client writing the table would have to)."""
    postgres = app.state.engine.dialect.name == "postgresql"
    types = {"at": "timestamptz", "details": "json"}
    placeholder = f"CAST(:value AS {types[field]})" if postgres and field in types else ":value"
    with app.state.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE audit_event SET {field} = {placeholder} WHERE seq = :seq"),
            {"value": value, "seq": seq},
        )


def _stored(app: FastAPI, seq: int, field: str) -> str:
    with app.state.engine.connect() as connection:
        return str(
            connection.execute(
                text(f"SELECT CAST({field} AS TEXT) FROM audit_event WHERE seq = :seq"),
                {"seq": seq},
            ).scalar_one()
        )


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seq=st.integers(1, len(DETAILS)),
    field=st.sampled_from(FIELDS),
    position=st.integers(0, 10_000),
    character=st.characters(codec="utf-8", exclude_categories=["Cs"]),
)
def test_any_one_character_changed_in_any_entry_is_found_and_named(
    app: FastAPI, seq: int, field: str, position: int, character: str
) -> None:
    if _report(app).entries == 0:
        _chain(app)
    original = _stored(app, seq, field)
    index = position % len(original)
    changed = original[:index] + character + original[index + 1 :]
    assume(changed != original)
    before = _content(app, seq)
    try:
        _store(app, seq, field, changed)
    except DBAPIError:
        assume(False)  # PostgreSQL refused it: not a time, not JSON
    try:
        report = _report(app)
        if _content(app, seq) == before:
            # The same value written otherwise (JSON spacing, a time's separator): nothing to find.
            assert report.intact, report.problem
        else:
            assert (report.intact, report.broken_at) == (False, seq), report
            assert f"entry {seq}" in str(report.problem)
    finally:
        _store(app, seq, field, original)
    assert _report(app).intact


def test_swapped_removed_and_inserted_entries_are_found(app: FastAPI) -> None:
    _chain(app)
    columns = "at, actor, action, object, details, prev_hash, hash"
    with app.state.engine.begin() as connection:
        connection.execute(text("UPDATE audit_event SET seq = 100 WHERE seq = 3"))
        connection.execute(text("UPDATE audit_event SET seq = 3 WHERE seq = 4"))
        connection.execute(text("UPDATE audit_event SET seq = 4 WHERE seq = 100"))
    report = _report(app)
    assert (report.broken_at, report.problem) == (3, "entry 3 does not follow entry 2")
    with app.state.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_event WHERE seq = 3"))
    assert (_report(app).broken_at, _report(app).problem) == (3, "entry 3 is missing")
    with app.state.engine.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO audit_event (seq, {columns}) "
                f"SELECT 3, {columns} FROM audit_event WHERE seq = 2"
            )
        )
    assert _report(app).broken_at == 3


def test_an_entry_added_past_the_head_is_found(app: FastAPI) -> None:
    _chain(app)
    last = len(DETAILS)
    with app.state.sessionmaker() as session:
        previous = session.get(AuditEvent, last)
        assert previous is not None
        added = AuditEvent(
            seq=last + 1,
            at=previous.at,
            actor="forger",
            action="release.produced",
            object="extract:x",
            details={},
            prev_hash=previous.hash,
        )
        added.hash = audit.entry_hash(added)
        session.add(added)
        session.commit()
    report = _report(app)
    assert (report.intact, report.broken_at) == (False, last + 1)
    assert "past the chain's head" in str(report.problem)


def test_verifying_while_the_service_appends_is_never_a_false_alarm(app: FastAPI) -> None:
    """The head is read before the walk; appends committed during it are left for later (they
    were reported as removed entries)."""
    stop = threading.Event()

    def appender() -> None:
        while not stop.is_set():
            with app.state.sessionmaker() as session:
                audit.append(session, "service", "test.append", "thing:busy")
                session.commit()

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        # At least 60 verifications, and on until the appender has committed during them (a
        # loaded machine may not schedule it at once): 30 s at most.
        deadline = time.monotonic() + 30
        reports = [_report(app) for _ in range(60)]
        while reports[-1].entries <= reports[0].entries and time.monotonic() < deadline:
            reports.append(_report(app))
    finally:
        stop.set()
        thread.join()
    assert [report.problem for report in reports if not report.intact] == []
    assert reports[-1].entries > reports[0].entries


def _rewrite(app: FastAPI, seq: int, actor: str) -> None:
    """What a database writer can do: change entry ``seq``, recompute every later hash and the
    head, and delete the head signatures the new hashes would contradict."""
    with app.state.sessionmaker() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        previous = GENESIS
        for event in events:
            if event.seq == seq:
                event.actor = actor
            event.prev_hash = previous
            event.hash = previous = audit.entry_hash(event)
        session.execute(update(AuditHead).values(hash=previous))
        session.execute(delete(AuditSignature))
        session.commit()


def _sign(app: FastAPI) -> int | None:
    with app.state.sessionmaker() as session:
        signed = audit.sign_head(session, app.state.signing_keys)
        session.commit()
    return signed.seq if signed else None


def test_a_chain_rewritten_with_fresh_hashes_and_its_signatures_deleted_is_found(
    app: FastAPI, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signatures live in the database too: without the head signed last, kept beside the
    signing keys, the rewritten chain was reported intact and the next signature covered it."""
    _chain(app)
    assert _sign(app) == len(DETAILS)
    _rewrite(app, 2, "ptg_someone_else")
    report = _report(app)
    assert (report.intact, report.broken_at) == (False, len(DETAILS))
    assert "the chain was rewritten" in str(report.problem)
    assert "audit-head.json" in str(report.problem)
    with app.state.sessionmaker() as session:
        audit.append(session, "service", "test.append", "thing:later")
        session.commit()
    with pytest.raises(audit.ChainBroken, match="not signing"):
        _sign(app)
    assert _report(app).broken_at == len(DETAILS)
    monkeypatch.setenv("PARTAGE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PARTAGE_KEYS_DIR", str(settings.keys_dir))
    get_settings.cache_clear()
    try:
        signing = CliRunner().invoke(cli, ["audit-log", "sign"])
        verifying = CliRunner().invoke(cli, ["audit-log", "verify"])
    finally:
        get_settings.cache_clear()
    assert signing.exit_code == 2, signing.output
    assert "not signing" in signing.output
    assert verifying.exit_code == 1, verifying.output
    assert f"BROKEN at entry {len(DETAILS)}" in verifying.output


def test_a_tail_cut_back_with_its_head_and_signatures_is_found(app: FastAPI) -> None:
    _chain(app)
    assert _sign(app) == len(DETAILS)
    with app.state.engine.begin() as connection:
        kept = connection.execute(text("SELECT hash FROM audit_event WHERE seq = 3")).scalar_one()
        connection.execute(text("DELETE FROM audit_event WHERE seq > 3"))
        connection.execute(update(AuditHead).values(seq=3, hash=kept))
        connection.execute(delete(AuditSignature))
    report = _report(app)
    assert (report.intact, report.broken_at) == (False, 4)
    assert f"signed at entry {len(DETAILS)}" in str(report.problem)
    assert "entries removed" in str(report.problem)


def test_the_head_signed_last_moves_with_each_signature(app: FastAPI, settings: Settings) -> None:
    _chain(app)
    assert _sign(app) == len(DETAILS)
    assert _sign(app) is None
    with app.state.sessionmaker() as session:
        audit.append(session, "service", "test.append", "thing:later")
        session.commit()
    assert _sign(app) == len(DETAILS) + 1
    kept = json.loads((settings.keys_dir / "audit-head.json").read_text())
    assert kept["seq"] == len(DETAILS) + 1
    assert oct((settings.keys_dir / "audit-head.json").stat().st_mode & 0o777) == "0o600"
    report = _report(app)
    assert (report.intact, report.signatures) == (True, 2)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"seq": 1e999, "hash": "%s"}' % ("ab" * 32),
        '{"seq": 2.5, "hash": "%s"}' % ("ab" * 32),
        '{"seq": true, "hash": "%s"}' % ("ab" * 32),
        '{"seq": "3", "hash": "%s"}' % ("ab" * 32),
        '{"seq": 3, "hash": 7}',
        '{"seq": 3, "hash": "not a digest"}',
        '{"seq": 99999999999999999999999, "hash": "%s"}' % ("ab" * 32),
        "[1]",
    ],
)
def test_an_unreadable_signed_head_file_is_reported_and_not_overwritten(
    app: FastAPI,
    settings: Settings,
    client: TestClient,
    admin: dict[str, str],
    content: str,
) -> None:
    """What is not a sequence number (a JSON integer of the database's range) and a SHA-256 in
    hex is no signed head: reported, never a 500 or a traceback, never read as another head."""
    _chain(app)
    assert _sign(app) is not None
    path = settings.keys_dir / "audit-head.json"
    path.write_text(content)
    report = _report(app)
    assert (report.intact, report.broken_at) == (False, None)
    assert str(path) in str(report.problem)
    answer = client.get("/audit/verify", headers=admin)
    assert answer.status_code == 200 and answer.json()["intact"] is False, answer.text
    with app.state.sessionmaker() as session:
        audit.append(session, "service", "test.append", "thing:later")
        session.commit()
    with pytest.raises(audit.ChainBroken, match="does not hold the last signed head"):
        _sign(app)
    assert path.read_text() == content


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_listing_shows_an_unreadable_entry_instead_of_failing(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    """SQLite keeps any text in a time or JSON column: an entry altered so that it no longer
    reads is listed, flagged, between the entries that read (PostgreSQL refuses such values)."""
    _chain(app)
    seq = _report(app).entries - 1
    _store(app, seq, "details", "{not json")
    _store(app, seq - 1, "at", "yesterday")
    response = client.get("/audit", params={"limit": 1000}, headers=admin)
    assert response.status_code == 200, response.text
    by_seq = {item["seq"]: item for item in response.json()["items"]}
    for altered in (seq - 1, seq):
        assert by_seq[altered]["problem"] is not None
        assert (by_seq[altered]["at"], by_seq[altered]["details"]) == (None, None)
        assert by_seq[altered]["action"] == "test.action"
    readable = [item for number, item in by_seq.items() if number not in (seq - 1, seq)]
    assert readable and all(item["problem"] is None and item["at"] for item in readable)
    assert not _report(app).intact

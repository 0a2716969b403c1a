"""Attacks on the audit log by someone who can write the database: any one character changed
in any entry, entries swapped, removed or inserted, and verifications running while the
service appends (which must never be reported broken)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.audit import service as audit
from service.audit.models import AuditEvent

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
        return audit.verify_chain(session, app.state.signing_keys.jwks())


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
        reports = [_report(app) for _ in range(60)]
    finally:
        stop.set()
        thread.join()
    assert [report.problem for report in reports if not report.intact] == []
    assert reports[-1].entries > reports[0].entries

"""Persistence plumbing: declarative base, engines, and the one-transaction-per-request session."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from fastapi import Request
from sqlalchemy import DateTime, Engine, MetaData, String, create_engine, event
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    SessionTransaction,
    mapped_column,
    sessionmaker,
    validates,
)
from sqlalchemy.types import TypeDecorator

from policies.text import name_key

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Any) -> Any:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(datetime.UTC) if value is not None else None

    def process_result_value(self, value: datetime.datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime.datetime: UTCDateTime}


class IdMixin:
    """A random UUID primary key and a creation time."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)


class NameKeyMixin:
    """A name unique as people read it (case, spacing, Unicode form aside): its ``name_key``,
    kept with the name, is unique."""

    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)

    @validates("name")
    def _keep_key(self, _: str, name: str) -> str:
        self.name_key = name_key(name)
        return name


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys enforced and cross-thread use."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Readers do not wait for the writer (uvicorn serves requests from several threads).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


def undo_on_rollback(session: Session, undo: Callable[[], None]) -> None:
    """Call ``undo`` if the session's transaction ends without committing (rolled back, or
    closed): for what a service did outside the database, such as a file it wrote, so that a
    request failing after it (up to its commit) leaves nothing behind."""
    root = session.get_transaction() or session.begin()
    committed = False

    def after_commit(_: Session) -> None:
        nonlocal committed
        # Also called when a savepoint is released: only the outermost commit counts.
        committed = committed or session.get_nested_transaction() is None

    def after_transaction_end(_: Session, transaction: SessionTransaction) -> None:
        if transaction is root and not committed:
            undo()

    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_transaction_end", after_transaction_end)


def get_session(request: Request) -> Iterator[Session]:
    """One session and one transaction per request: committed at the end, rolled back on error.

    Services only flush; nothing is half-written when a request fails midway.
    """
    with request.app.state.sessionmaker() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

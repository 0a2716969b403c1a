"""One ``partage serve`` per database: its worker pool takes any job left running that none of
its threads runs as interrupted (queued again, its files deleted), so a second server on the
same database would take over the first one's running jobs every second."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.errors import Conflict

# pg_try_advisory_lock's key: 'partage' read as an integer (advisory locks are per database).
_ADVISORY_KEY = int.from_bytes(b"partage", "big")


def _in_use(where: str) -> Conflict:
    return Conflict(
        f"another `partage serve` is serving this database ({where}): one server per database, "
        "since each takes the jobs it does not run itself as interrupted; stop the other first",
        field="PARTAGE_DATABASE_URL",
        code="database_in_use",
    )


@contextlib.contextmanager
def only_server(database_url: str) -> Iterator[None]:
    """Hold the database for this server while the block runs; :class:`Conflict` if another
    server holds it (a PostgreSQL advisory lock; a lock file beside a SQLite database)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            yield
            return
        path = Path(f"{url.database}.serve-lock")
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _in_use(f"{path} is locked") from None
            yield
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            held = connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": _ADVISORY_KEY}
            )
            if not held:
                raise _in_use("its advisory lock is held")
            yield
    finally:
        engine.dispose()

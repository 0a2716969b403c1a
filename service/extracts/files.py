"""A release's files: one per format, each encrypted at rest under its own data key.

A file is usable only with the wrapped data key recorded in the extract's row, which is
committed after the file is durably on disk: a file left by a crash cannot be read.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from anonymization.release import sha256_hex
from policies.models import FORMATS, OutputFormat
from service.extracts.models import RUNNING, SUCCEEDED, Extract
from service.storage import EncryptedStore, WrappedKey

KIND = "releases"


def _name(extract_id: uuid.UUID, fmt: str) -> str:
    return f"{extract_id}.{fmt}"


def write(
    store: EncryptedStore, extract_id: uuid.UUID, outputs: dict[OutputFormat, bytes]
) -> dict[str, dict[str, Any]]:
    """Encrypt and store every output (fsynced, renamed into place); their records."""
    records: dict[str, dict[str, Any]] = {}
    for fmt, data in outputs.items():
        key = store.write(KIND, _name(extract_id, fmt), data)
        records[fmt] = {"sha256": sha256_hex(data), "bytes": len(data), **_key_record(key)}
    return records


def _key_record(key: WrappedKey) -> dict[str, str]:
    return {"key_id": key.key_id, "wrapped": base64.b64encode(key.wrapped).decode("ascii")}


def _wrapped_key(record: dict[str, Any]) -> WrappedKey:
    return WrappedKey(record["key_id"], base64.b64decode(record["wrapped"]))


def read(store: EncryptedStore, extract: Extract, fmt: str) -> bytes:
    return store.read(KIND, _name(extract.id, fmt), _wrapped_key(extract.files[fmt]))


def rewrap_all(session: Session, store: EncryptedStore) -> int:
    """Wrap every release file's data key with the newest storage key; the number re-wrapped.

    The rows are locked (PostgreSQL), so an expiry sweep cannot drop keys that this then puts
    back."""
    count = 0
    for extract in session.scalars(select(Extract).order_by(Extract.id).with_for_update()):
        if not any("wrapped" in record for record in extract.files.values()):
            continue
        rewrapped = {}
        for fmt, record in extract.files.items():
            if "wrapped" in record:
                key = store.rewrap(KIND, _name(extract.id, fmt), _wrapped_key(record))
                record = {**record, **_key_record(key)}
                count += 1
            rewrapped[fmt] = record
        extract.files = rewrapped
    session.flush()
    return count


def delete(store: EncryptedStore, extract_id: uuid.UUID) -> None:
    """Remove every file the extract may have written (none may exist)."""
    for fmt in FORMATS:
        store.delete(KIND, _name(extract_id, fmt))


def sweep(session: Session, store: EncryptedStore) -> int:
    """Delete the files of releases neither running nor live (an expiry or a failure whose
    deletion was interrupted left them); how many releases had some."""
    # Listed before the rows are read: a job writes files only while its row is running.
    on_disk = {name.partition(".")[0] for name in store.names(KIND)}
    kept = {
        str(extract_id)
        for extract_id in session.scalars(
            select(Extract.id).where(Extract.status.in_((RUNNING, SUCCEEDED)))
        )
    }
    left = on_disk - kept
    for name in left:
        for fmt in FORMATS:
            store.delete(KIND, f"{name}.{fmt}")
    return len(left)


def forget_keys(extract: Extract) -> None:
    """Keep each file's hash and size, drop its wrapped key (the release expired)."""
    extract.files = {
        fmt: {"sha256": record["sha256"], "bytes": record["bytes"]}
        for fmt, record in extract.files.items()
    }


def key_ids_in_use(session: Session) -> frozenset[str]:
    """The storage keys that wrap release files' data keys."""
    return frozenset(
        record["key_id"]
        for files in session.scalars(select(Extract.files))
        for record in files.values()
        if "key_id" in record
    )


def job_running(session: Session) -> bool:
    """Whether a release job is running: it may hold data keys wrapped but not yet committed."""
    return session.scalars(select(Extract.id).where(Extract.status == RUNNING)).first() is not None

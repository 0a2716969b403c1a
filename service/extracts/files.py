"""A release's files: one per format, each encrypted at rest under its own data key.

A file is usable only with the wrapped data key recorded in the extract's row, which is
committed after the file is durably on disk: a file left by a crash cannot be read.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from anonymization.release import sha256_hex
from policies.models import FORMATS, OutputFormat
from service.extracts.models import Extract
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
        records[fmt] = {
            "sha256": sha256_hex(data),
            "bytes": len(data),
            "key_id": key.key_id,
            "wrapped": base64.b64encode(key.wrapped).decode("ascii"),
        }
    return records


def read(store: EncryptedStore, extract: Extract, fmt: str) -> bytes:
    record = extract.files[fmt]
    key = WrappedKey(record["key_id"], base64.b64decode(record["wrapped"]))
    return store.read(KIND, _name(extract.id, fmt), key)


def delete(store: EncryptedStore, extract_id: uuid.UUID) -> None:
    """Remove every file the extract may have written (none may exist)."""
    for fmt in FORMATS:
        store.delete(KIND, _name(extract_id, fmt))


def forget_keys(extract: Extract) -> None:
    """Keep each file's hash and size, drop its wrapped key (the release expired)."""
    extract.files = {
        fmt: {"sha256": record["sha256"], "bytes": record["bytes"]}
        for fmt, record in extract.files.items()
    }

"""Secrets the offline commands read from files (a dataset's noise secret, a pseudonym key)."""

from __future__ import annotations

from pathlib import Path

from anonymization.errors import InvalidRequest


def read_secret_file(path: Path, field: str, *, what: str = "", code: str | None = None) -> bytes:
    """The file's bytes less one trailing line ending: a key typed or echoed into a file reads as
    typed, and a random binary key (``head -c 32 /dev/urandom``) keeps every byte, whitespace
    included. An unreadable file is an error naming ``field``."""
    try:
        secret = path.read_bytes()
    except OSError as error:
        raise InvalidRequest(
            f"cannot read {what}{path}: {error.strerror}", field=field, code=code
        ) from None
    for ending in (b"\r\n", b"\n"):
        if secret.endswith(ending):
            return secret[: -len(ending)]
    return secret

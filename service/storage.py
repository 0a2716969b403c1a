"""Encryption at rest: each stored file has its own AES-256-GCM data key, wrapped by a service key.

The file's ciphertext is bound to its place by the associated data (what it is and its id), so a
file swapped for another one's fails to decrypt. Rotating the service key only re-wraps the small
data keys; the files are not rewritten.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.keys import StorageKeys

NONCE_BYTES = 12


@dataclass(frozen=True)
class WrappedKey:
    key_id: str
    wrapped: bytes


class StorageError(Exception):
    """A stored file that is missing or does not decrypt (tampered, or the wrong key)."""


def _seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def _open(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag:
        raise StorageError("stored data does not decrypt: tampered or wrong key") from None


class EncryptedStore:
    """Files under ``root/<kind>/<name>``, encrypted, with data keys wrapped by the service key."""

    def __init__(self, root: Path, keys: StorageKeys) -> None:
        self.root = root
        self.keys = keys

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.bin"

    @staticmethod
    def _associated(kind: str, name: str, what: str) -> bytes:
        return f"partage:{kind}:{name}:{what}".encode()

    def write(self, kind: str, name: str, plaintext: bytes) -> WrappedKey:
        """Encrypt ``plaintext`` under a fresh data key; return that key wrapped."""
        data_key = AESGCM.generate_key(bit_length=256)
        path = self._path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as stream:
            stream.write(_seal(data_key, plaintext, self._associated(kind, name, "file")))
            stream.flush()
            os.fsync(stream.fileno())
        # Renamed only once on disk, and the rename itself made durable.
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return self._wrap(kind, name, data_key)

    def read(self, kind: str, name: str, key: WrappedKey) -> bytes:
        path = self._path(kind, name)
        if not path.is_file():
            raise StorageError(f"stored file {kind}/{name} is missing")
        data_key = self._unwrap(kind, name, key)
        return _open(data_key, path.read_bytes(), self._associated(kind, name, "file"))

    def names(self, kind: str) -> set[str]:
        """The names of the files of ``kind`` on disk, whole or partly written."""
        folder = self.root / kind
        if not folder.is_dir():
            return set()
        return {path.stem for path in folder.iterdir() if path.suffix in (".bin", ".partial")}

    def delete(self, kind: str, name: str) -> None:
        path = self._path(kind, name)
        path.unlink(missing_ok=True)
        path.with_suffix(".partial").unlink(missing_ok=True)

    def wrap_secret(self, kind: str, name: str, secret: bytes) -> WrappedKey:
        """A secret kept in the database (not a file), wrapped like a data key and bound to
        ``kind`` and ``name``; :meth:`rewrap` re-wraps it on rotation."""
        return self._wrap(kind, name, secret)

    def unwrap_secret(self, kind: str, name: str, key: WrappedKey) -> bytes:
        """The secret :meth:`wrap_secret` wrapped."""
        return self._unwrap(kind, name, key)

    def rewrap(self, kind: str, name: str, key: WrappedKey) -> WrappedKey:
        """The same data key wrapped by the newest service key."""
        return self._wrap(kind, name, self._unwrap(kind, name, key))

    def _wrap(self, kind: str, name: str, data_key: bytes) -> WrappedKey:
        key_id, service_key = self.keys.current()
        sealed = _seal(service_key, data_key, self._associated(kind, name, "data-key"))
        return WrappedKey(key_id, sealed)

    def _unwrap(self, kind: str, name: str, key: WrappedKey) -> bytes:
        try:
            service_key = self.keys.get(key.key_id)
        except KeyError:
            raise StorageError(
                f"the key of {kind}/{name}: service key {key.key_id} is gone"
            ) from None
        try:
            return _open(service_key, key.wrapped, self._associated(kind, name, "data-key"))
        except StorageError:
            raise StorageError(
                f"the key of {kind}/{name} does not unwrap: tampered or wrong key"
            ) from None

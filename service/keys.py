"""Key material kept as files under ``KEYS_DIR``: token signing keys and storage wrapping keys.

Each key is one JSON file ``<kid>.json`` holding its creation time and material, written with
mode 0600. Rotation adds a newer file; the newest key signs or wraps, older ones stay for
verification (signing keys, until every token they signed has expired) or until re-wrapping
is done (storage keys).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc.jwk import KeySet, OKPKey

from service.db import utcnow

SIGNING_ALGORITHM: Literal["Ed25519"] = "Ed25519"


def write_private_json(path: Path, document: Any) -> None:
    """Write JSON readable by its owner only, atomically (a 0600 temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class StoredKey:
    kid: str
    created_at: datetime.datetime
    material: dict[str, Any]


class KeyDirectory:
    """A folder of versioned keys, newest last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self) -> list[StoredKey]:
        if not self.folder.is_dir():
            return []
        keys = []
        for path in self.folder.glob("*.json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            created = datetime.datetime.fromisoformat(data["created_at"])
            keys.append(StoredKey(data["kid"], created, data["material"]))
        return sorted(keys, key=lambda key: (key.created_at, key.kid))

    def add(self, material: dict[str, Any], kid: str) -> StoredKey:
        key = StoredKey(kid, utcnow(), material)
        body = {"kid": kid, "created_at": key.created_at.isoformat(), "material": material}
        write_private_json(self.folder / f"{kid}.json", body)
        return key

    def remove(self, kid: str) -> None:
        (self.folder / f"{kid}.json").unlink(missing_ok=True)


def new_kid() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


class SigningKeys:
    """Ed25519 keys for access tokens; a retired key verifies until its last token expires."""

    def __init__(self, keys_dir: Path, token_ttl_seconds: int, publish_days: int = 3650) -> None:
        self.keys_dir = keys_dir
        self.directory = KeyDirectory(keys_dir / "signing")
        self.grace = datetime.timedelta(seconds=token_ttl_seconds)
        # Manifests and audit heads outlive tokens: their keys stay published longer.
        self.publish_grace = max(self.grace, datetime.timedelta(days=publish_days))

    def rotate(self) -> str:
        """Add a new signing key (it signs from now on) and drop keys no token can need."""
        kid = new_kid()
        private = OKPKey.generate_key(
            SIGNING_ALGORITHM, parameters={"kid": kid, "use": "sig", "alg": SIGNING_ALGORITHM}
        )
        self.directory.add(private.as_dict(private=True), kid)
        live = {key.kid for key in self._live(self.publish_grace)}
        for key in self.directory.load():
            if key.kid not in live:
                self.directory.remove(key.kid)
        return kid

    def _live(self, grace: datetime.timedelta) -> list[StoredKey]:
        keys = self.directory.load()
        now = utcnow()
        # Live: the newest key, or one whose successor is younger than ``grace``. Not strict:
        # with no key yet the successors list holds the newest key's ``None`` alone.
        return [
            key
            for key, newer in zip(keys, [*keys[1:], None], strict=False)
            if newer is None or now < newer.created_at + grace
        ]

    def signing_key(self) -> OKPKey:
        """The newest key (one is created on first use)."""
        keys = self.directory.load()
        if not keys:
            self.rotate()
            keys = self.directory.load()
        return OKPKey.import_key(keys[-1].material)

    def verification_keys(self) -> KeySet:
        """Keys that may have signed a still-valid access token."""
        return KeySet([OKPKey.import_key(key.material) for key in self._live(self.grace)])

    def jwks(self) -> dict[str, Any]:
        """The public JSON Web Key Set: every key that may have signed a still-valid token,
        a manifest or an audit head (retired keys stay ``publish_days``)."""
        published: list[Any] = [
            OKPKey.import_key(key.material) for key in self._live(self.publish_grace)
        ]
        return dict(KeySet(published).as_dict(private=False))


class StorageKeys:
    """AES-256 service keys that wrap the data keys of stored files and the secrets kept in the
    database."""

    def __init__(self, keys_dir: Path) -> None:
        self.directory = KeyDirectory(keys_dir / "storage")

    def add(self) -> str:
        kid = new_kid()
        self.directory.add(_storage_material(secrets.token_bytes(32)), kid)
        return kid

    def current(self) -> tuple[str, bytes]:
        """The newest wrapping key as (kid, key bytes); one is created on first use."""
        keys = self.directory.load()
        if not keys:
            self.add()
            keys = self.directory.load()
        return keys[-1].kid, base64.b64decode(keys[-1].material["k"])

    def get(self, kid: str) -> bytes:
        for key in self.directory.load():
            if key.kid == kid:
                return base64.b64decode(key.material["k"])
        raise KeyError(kid)

    def retire_all_but_current(self, keep: frozenset[str] = frozenset()) -> list[str]:
        """Delete every key but the newest and those in ``keep``; the kids deleted."""
        current, _ = self.current()
        retired = [
            key.kid for key in self.directory.load() if key.kid != current and key.kid not in keep
        ]
        for kid in retired:
            self.directory.remove(kid)
        return retired


class NextStorageKeys(StorageKeys):
    """The storage keys and a new one that wraps through this object only until :meth:`save`:
    keys re-wrapped under it before then are readable by nobody else, so a rotation that stops
    half-way leaves the directory as it was."""

    def __init__(self, keys_dir: Path) -> None:
        super().__init__(keys_dir)
        self.kid = new_kid()
        self._key = secrets.token_bytes(32)

    def current(self) -> tuple[str, bytes]:
        return self.kid, self._key

    def get(self, kid: str) -> bytes:
        return self._key if kid == self.kid else super().get(kid)

    def save(self) -> None:
        """Write the new key: from now on it is every process's newest key."""
        self.directory.add(_storage_material(self._key), self.kid)


def _storage_material(key: bytes) -> dict[str, Any]:
    return {"k": base64.b64encode(key).decode("ascii")}

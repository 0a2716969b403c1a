"""The release manifest: what was released, under which agreement version, from which data,
how it was protected, and the SHA-256 of each format; signed with the service's Ed25519 key.

:func:`verify_release` is what ``partage verify`` runs offline with the service's JWKS.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

from service.extracts.models import Extract
from service.keys import SigningKeys
from service.signatures import SignatureError, sign, verify

MANIFEST_VERSION = 1
HASHED_BLOCK = 1 << 20


def build(
    extract: Extract,
    dataset: dict[str, str],
    summary: dict[str, Any],
    outputs: dict[str, dict[str, Any]],
    issuer: str,
    expires_at: datetime.datetime,
) -> dict[str, Any]:
    """The manifest's content (unsigned); ``summary`` says how the release was protected."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "issuer": issuer,
        "extract_id": str(extract.id),
        "partner_id": str(extract.partner_id),
        "agreement": {"id": str(extract.agreement_id), "version": extract.agreement_version},
        "dataset": dataset,
        "request": extract.request,
        **summary,
        "outputs": {
            fmt: {"sha256": record["sha256"], "bytes": record["bytes"]}
            for fmt, record in sorted(outputs.items())
        },
        "expires_at": expires_at.isoformat(),
    }


def signed(keys: SigningKeys, document: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its ``signature`` member, over every other member."""
    return {**document, "signature": sign(keys, document)}


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def verify_release(manifest: dict[str, Any], jwks: dict[str, Any], data: Path) -> tuple[str, str]:
    """Check the manifest's signature and that ``data`` is one of its outputs.

    Returns (kid that signed, format of the file); raises :class:`SignatureError`.
    """
    document = {name: value for name, value in manifest.items() if name != "signature"}
    signature = manifest.get("signature")
    if not isinstance(signature, dict):
        raise SignatureError("the manifest carries no signature")
    kid = verify(jwks, document, signature)
    digest = file_sha256(data)
    outputs = document.get("outputs", {})
    for fmt, record in outputs.items():
        if record.get("sha256") == digest:
            return kid, fmt
    raise SignatureError(
        f"{data.name} (sha256 {digest}) is none of the manifest's outputs "
        f"({', '.join(sorted(outputs))}): it was changed or belongs to another release"
    )

"""Keyed pseudonyms for the subject column: HMAC-SHA256 under a key derived per agreement.

Plain hashing is refused: a meter or card number has so few possible values that its SHA-256
is reversed by enumeration. With a secret key, and a different key per agreement (HKDF of the
service secret with the agreement id), two partners' pseudonyms of one subject never match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from anonymization.errors import InvalidRequest

MIN_SECRET_BYTES = 32


def agreement_key(secret: bytes, agreement: str) -> bytes:
    """The pseudonym key of one agreement: HKDF-SHA256 of the secret, bound to the agreement id."""
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidRequest(
            f"the pseudonym secret must have at least {MIN_SECRET_BYTES} bytes",
            field="pseudonym_key",
            code="weak_pseudonym_key",
        )
    if not agreement:
        raise InvalidRequest(
            "pseudonyms need an agreement id", field="agreement", code="missing_agreement"
        )
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"partage/pseudonym/v1",
        info=agreement.encode("utf-8"),
    )
    return hkdf.derive(secret)


def pseudonymize(values: Iterable[str], key: bytes) -> list[str]:
    """HMAC-SHA256 of each value under ``key``, as 32 hex characters (128 bits)."""
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidRequest(
            "refusing to pseudonymize without a secret key of 32 bytes or more",
            field="pseudonym_key",
            code="weak_pseudonym_key",
        )
    return [
        hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32] for value in values
    ]

"""Ed25519 signatures over canonical JSON (RFC 8785), for manifests and the audit log's head.

A signature is ``{"alg": "Ed25519", "kid": ..., "value": base64url}``; anyone holding the
service's public JWKS (``/.well-known/jwks.json``) checks it offline.
"""

from __future__ import annotations

import base64
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from service.keys import SIGNING_ALGORITHM, SigningKeys


class SignatureError(Exception):
    """A signature that is malformed, by an unknown key, or does not match the document."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(keys: SigningKeys, document: Any) -> dict[str, str]:
    """Sign the canonical JSON of ``document`` with the service's newest signing key."""
    key = keys.signing_key()
    private = key.private_key
    assert isinstance(private, Ed25519PrivateKey)
    value = private.sign(rfc8785.dumps(document))
    return {"alg": SIGNING_ALGORITHM, "kid": str(key.kid), "value": _b64(value)}


def verify(jwks: dict[str, Any], document: Any, signature: dict[str, Any]) -> str:
    """Check ``signature`` over ``document`` with the key it names in ``jwks``; its kid."""
    if signature.get("alg") != SIGNING_ALGORITHM:
        raise SignatureError(f"unsupported signature algorithm {signature.get('alg')!r}")
    kid = str(signature.get("kid"))
    try:
        key = KeySet.import_key_set(jwks).get_by_kid(kid)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError):
        raise SignatureError(f"no key {kid!r} in the JWKS") from None
    public = key.public_key if isinstance(key, OKPKey) else None
    if not isinstance(public, Ed25519PublicKey):
        raise SignatureError(f"key {kid!r} is not an Ed25519 key")
    try:
        public.verify(_unb64(str(signature.get("value", ""))), rfc8785.dumps(document))
    except (InvalidSignature, ValueError):
        raise SignatureError(f"the signature by key {kid!r} does not match") from None
    return kid

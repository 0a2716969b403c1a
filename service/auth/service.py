"""Clients and tokens: create a client (secret shown once), rotate a secret, sign and check JWTs."""

from __future__ import annotations

import contextlib
import functools
import secrets
import time
import uuid
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.auth.models import OAuthClient
from service.config import Settings
from service.errors import Conflict, Unauthorized
from service.keys import SIGNING_ALGORITHM, SigningKeys

# OWASP's argon2id baseline (19 MiB, 2 passes): secrets are 256-bit random, so this guards
# leaked hashes while keeping the token endpoint cheap (~0.1 s per check on one core).
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def secret_matches(client: OAuthClient, secret: str) -> bool:
    try:
        return _hasher.verify(client.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _unused_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(32))


def spend_a_check(secret: str) -> None:
    """Verify ``secret`` against a hash nobody holds: an unknown client costs what a known does."""
    with contextlib.suppress(VerificationError, InvalidHashError):
        _hasher.verify(_unused_hash(), secret)


def create_client(
    session: Session, name: str, scopes: tuple[str, ...], partner_id: uuid.UUID | None = None
) -> tuple[OAuthClient, str]:
    """A new client and its secret in clear (returned once, never stored)."""
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id="ptg_" + secrets.token_hex(12),
        name=name,
        secret_hash=hash_secret(secret),
        scope=" ".join(scopes),
        partner_id=partner_id,
    )
    session.add(client)
    session.flush()
    return client, secret


def rotate_secret(session: Session, client: OAuthClient) -> str:
    """A new secret; tokens issued under the old one stop working at once.

    A compare-and-swap on the generation read: of two concurrent rotations one wins, the other
    is a :class:`Conflict` (its secret would have been overwritten, so it is never shown).
    """
    secret = secrets.token_urlsafe(32)
    read = client.secret_generation
    swapped = session.execute(
        update(OAuthClient)
        .where(OAuthClient.id == client.id, OAuthClient.secret_generation == read)
        .values(secret_hash=hash_secret(secret), secret_generation=read + 1)
        .execution_options(synchronize_session=False)
    )
    if swapped.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"a concurrent rotation of {client.client_id}'s secret won (generation {read} was "
            "replaced meanwhile): its caller holds the new secret; rotate again to get one",
            field="client_secret",
            code="concurrent_rotation",
        )
    session.refresh(client)
    return secret


def get_client(session: Session, client_id: str) -> OAuthClient | None:
    return session.scalars(
        select(OAuthClient).where(
            OAuthClient.client_id == client_id, OAuthClient.disabled_at.is_(None)
        )
    ).one_or_none()


def sign_access_token(
    client: OAuthClient, scope: str, keys: SigningKeys, settings: Settings
) -> dict[str, Any]:
    """An RFC 6749 token response whose access token is a JWT signed with the newest key."""
    now = int(time.time())
    key = keys.signing_key()
    claims = {
        "iss": settings.token_issuer,
        "sub": client.client_id,
        "iat": now,
        "exp": now + settings.token_ttl_seconds,
        "jti": secrets.token_hex(16),
        "scope": scope,
        "gen": client.secret_generation,
    }
    header = {"alg": SIGNING_ALGORITHM, "kid": key.kid, "typ": "at+jwt"}
    token = jwt.encode(header, claims, key, algorithms=[SIGNING_ALGORITHM])
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": settings.token_ttl_seconds,
        "scope": scope,
    }


def verify_access_token(token: str, keys: SigningKeys, settings: Settings) -> dict[str, Any]:
    """The claims of a valid, unexpired token signed by a live key; else :class:`Unauthorized`."""
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": settings.token_issuer},
        sub={"essential": True},
        exp={"essential": True},
        scope={"essential": True},
        gen={"essential": True},
    )
    try:
        decoded = jwt.decode(token, keys.verification_keys(), algorithms=[SIGNING_ALGORITHM])
        registry.validate(decoded.claims)
    except (JoseError, ValueError) as error:
        raise Unauthorized(f"invalid access token: {error}") from None
    return dict(decoded.claims)

"""Who is calling: the bearer token checked, its client loaded, its scopes enforced per route."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth.models import SCOPE_ADMIN, SCOPE_EXTRACTS_READ, SCOPE_EXTRACTS_REQUEST
from service.auth.service import get_client, verify_access_token
from service.auth.transport import insecure_transport
from service.deps import LimiterDep, SessionDep, SettingsDep, SigningKeysDep
from service.errors import Forbidden, InsecureTransport, TooManyRequests, Unauthorized

bearer = HTTPBearer(description="An access token from `POST /oauth/token`.")


@dataclass(frozen=True)
class Caller:
    """The authenticated client: its scopes and, for a partner, which partner it acts for."""

    client_id: str
    scopes: frozenset[str]
    partner_id: uuid.UUID | None

    @property
    def is_admin(self) -> bool:
        return SCOPE_ADMIN in self.scopes

    def has(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes


def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
    session: SessionDep,
    keys: SigningKeysDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> Caller:
    refused = insecure_transport(request)
    if refused:  # the token crossed the network in clear: it is refused, as a secret would be
        raise InsecureTransport(refused)
    claims = verify_access_token(credentials.credentials, keys, settings)
    client = get_client(session, str(claims["sub"]))
    if client is None or client.secret_generation != claims["gen"]:
        raise Unauthorized("the client of this token is disabled or its secret was rotated")
    wait = limiter.take(client.client_id)
    if wait:
        raise TooManyRequests(f"rate limit of {client.client_id} exceeded", retry_after=wait)
    # A token never carries more than the client is granted now.
    scopes = frozenset(str(claims["scope"]).split()) & client.scopes
    return Caller(client.client_id, scopes, client.partner_id)


def require_scope(scope: str) -> Callable[[Caller], Caller]:
    """A dependency admitting callers whose token holds ``scope`` (``admin`` holds every scope)."""

    def check(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if not caller.has(scope):
            raise Forbidden(f"this route needs the {scope!r} scope", field="scope")
        return caller

    return check


AdminCaller = Annotated[Caller, Depends(require_scope(SCOPE_ADMIN))]
ReaderCaller = Annotated[Caller, Depends(require_scope(SCOPE_EXTRACTS_READ))]
RequesterCaller = Annotated[Caller, Depends(require_scope(SCOPE_EXTRACTS_REQUEST))]

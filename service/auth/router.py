"""``POST /oauth/token`` (client credentials) and the public keys at ``/.well-known/jwks.json``."""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.auth.server import FormRequest, RateLimited, TokenServer, claimed_client_id
from service.deps import LimiterDep, SessionDep, SettingsDep, SigningKeysDep, TokenAttemptsDep

router = APIRouter(tags=["auth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    error: str
    error_description: str | None = None
    detail: str
    field: str | None = None


_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "scope": {"type": "string", "example": "extracts:read extracts:request"},
    },
}


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses={
        400: {"model": OAuthError},
        401: {"model": OAuthError},
        429: {
            "model": OAuthError,
            "description": "Too many attempts, or past the client's rate limit: see `Retry-After`",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}},
        }
    },
    summary="Client credentials grant (RFC 6749 §4.4): a short-lived signed JWT",
)
async def token(
    request: Request,
    session: SessionDep,
    keys: SigningKeysDep,
    settings: SettingsDep,
    attempts: TokenAttemptsDep,
    limiter: LimiterDep,
) -> JSONResponse:
    form = await request.form()
    server = TokenServer(session, keys, settings, limiter)
    try:
        oauth_request = FormRequest.received(request, form)
    except OAuth2Error as error:
        return server.handle_error_response(None, error)
    # Limited before the secret is checked: every check runs argon2 (0.1 s, 19 MiB).
    client_id = claimed_client_id(oauth_request)
    address = request.client.host if request.client else ""
    wait, field = attempts.admit(client_id, address)
    if wait:
        return server.handle_error_response(None, _too_many(wait, field))
    response: JSONResponse = await run_in_threadpool(server.create_token_response, oauth_request)
    if response.status_code != 401:  # the client authenticated: no failure to count
        attempts.succeeded(client_id, address)
    return response


def _too_many(wait: int, field: str | None) -> RateLimited:
    """The 429 of too many attempts from an address (failures for one client id: ``field``)."""
    what = (
        "too many failed token requests for this client id from this address"
        if field
        else "too many token requests from this address"
    )
    return RateLimited(f"{what}: retry after {wait} s", wait, field)


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
def jwks(keys: SigningKeysDep) -> dict[str, Any]:
    return keys.jwks()

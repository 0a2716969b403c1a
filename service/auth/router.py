"""``POST /oauth/token`` (client credentials) and the public keys at ``/.well-known/jwks.json``."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InsecureTransportError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.auth.server import FormRequest, TokenServer
from service.deps import SessionDep, SettingsDep, SigningKeysDep

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
    responses={400: {"model": OAuthError}, 401: {"model": OAuthError}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}},
        }
    },
    summary="Client credentials grant (RFC 6749 §4.4): a short-lived signed JWT",
)
async def token(
    request: Request, session: SessionDep, keys: SigningKeysDep, settings: SettingsDep
) -> JSONResponse:
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    server = TokenServer(session, keys, settings)
    try:
        oauth_request = FormRequest(str(request.url), request.headers, fields)
    except InsecureTransportError as error:
        return server.handle_error_response(None, error)  # type: ignore[no-any-return]
    response: JSONResponse = await run_in_threadpool(server.create_token_response, oauth_request)
    return response


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
def jwks(keys: SigningKeysDep) -> dict[str, Any]:
    return keys.jwks()

"""authlib's framework-agnostic authorization server, adapted to FastAPI for one grant.

Only the client-credentials grant (RFC 6749 §4.4) is registered. Clients authenticate with
HTTP Basic or with ``client_id``/``client_secret`` in the form, never both (RFC 6749 §2.3); the
token is a signed JWT. An unknown client and a wrong secret get the same 401, after the same
work, so the endpoint does not tell which client IDs exist.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import unquote

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request

from service.audit import service as audit
from service.auth.models import ALL_SCOPES, CLIENT_ID_MAX, OAuthClient
from service.auth.service import get_client, secret_matches, sign_access_token, spend_a_check
from service.auth.transport import connection_url, insecure_transport
from service.config import Settings
from service.keys import SigningKeys
from service.ratelimit import RateLimiter

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
AUTH_FAILED = "client authentication failed: unknown client, disabled client or wrong secret"
# The form parameter an error of authlib's is about.
ERROR_FIELDS = {"unsupported_grant_type": "grant_type", "invalid_scope": "scope"}


class _Client(ClientMixin):  # type: ignore[misc]
    """The view of an :class:`OAuthClient` that authlib asks questions of."""

    def __init__(self, record: OAuthClient) -> None:
        self.record = record

    def get_client_id(self) -> str:
        return self.record.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(self.record, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An already-read form POST, in the shape authlib expects."""

    def __init__(self, url: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        # Starlette headers look up names case-insensitively, as authlib expects.
        super().__init__(method="POST", uri=url, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @classmethod
    def received(cls, request: Request, form: FormData) -> FormRequest:
        """The token request ``request`` carries, its ``form`` read: :class:`OAuth2Error` if it
        came in plain HTTP from another machine (see :mod:`service.auth.transport`), or names a
        parameter twice."""
        refused = insecure_transport(request)
        if refused:
            raise InsecureTransportError(description=refused)
        # RFC 6749 §3.2: a parameter appears once. Were the last value kept, a filter in front
        # of the service reading the first would see another request than the one checked.
        for name in dict.fromkeys(name for name, _ in form.multi_items()):
            if len(form.getlist(name)) > 1:
                raise RepeatedParameter(name)
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        return cls(connection_url(request), request.headers, fields)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class RepeatedParameter(InvalidRequestError):  # type: ignore[misc]
    """400 ``invalid_request`` naming a form parameter sent more than once."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{_shown(name)} is sent more than once: send each parameter once")
        self.field = name


class RateLimited(OAuth2Error):  # type: ignore[misc]
    """429 with ``Retry-After``: the client spent its requests (tokens count as requests), or
    too many attempts came from an address (``field``: the client id, when they are failures
    for one id)."""

    error = "too_many_requests"

    def __init__(self, description: str, wait: int, field: str | None = None) -> None:
        super().__init__(description, status_code=429)
        self.wait = wait
        self.field = field

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.wait))]


class TokenServer(AuthorizationServer):  # type: ignore[misc]
    """Issues JWT access tokens to the clients stored in ``session``."""

    def __init__(
        self, session: Session, keys: SigningKeys, settings: Settings, limiter: RateLimiter
    ) -> None:
        super().__init__(scopes_supported=list(ALL_SCOPES))
        self.session = session
        self.keys = keys
        self.settings = settings
        self.limiter = limiter
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", self._generate)

    def authenticate_client(
        self, request: FormRequest, methods: list[str], endpoint: str = "token"
    ) -> _Client:
        """The client whose credentials (HTTP Basic or the form's, one of them) are right."""
        method, client_id, secret = _credentials(request)
        if not client_id:
            raise InvalidClientError(
                status_code=401,
                description="no client credentials: send HTTP Basic or client_id and client_secret",
            )
        client = self.query_client(client_id)
        if client is None:
            spend_a_check(secret)  # as long as a wrong secret takes
            raise InvalidClientError(status_code=401, description=AUTH_FAILED)
        if not client.check_client_secret(secret):
            raise InvalidClientError(status_code=401, description=AUTH_FAILED)
        # Counted once authenticated: a stranger sending a client's id cannot spend its bucket.
        wait = self.limiter.take(client_id)
        if wait:
            raise RateLimited(f"rate limit of {client_id} exceeded", wait)
        request.auth_method = method
        return client

    def query_client(self, client_id: str) -> _Client | None:
        # Ours are short and printable; anything else (a NUL byte, which PostgreSQL refuses in
        # a query) names no client.
        plausible = 0 < len(client_id) <= CLIENT_ID_MAX and client_id.isprintable()
        record = get_client(self.session, client_id) if plausible else None
        return _Client(record) if record else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs: nothing is stored but the audit event."""
        client_id = request.client.get_client_id()
        audit.append(
            self.session,
            client_id,
            "token.issued",
            f"client:{client_id}",
            {"scope": token["scope"], "expires_in": token["expires_in"]},
        )

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal bus in this service."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def handle_error_response(
        self, request: FormRequest | None, error: OAuth2Error
    ) -> JSONResponse:
        """OAuth's error shape (RFC 6749 §5.2), always with a description, and the service's
        ``detail`` and ``field`` (None where no one parameter is at fault, or where saying which
        of the client's id and secret was wrong would tell which client ids exist)."""
        status, body, headers = error(self.get_error_uri(request, error))
        description = _description(error) or body["error"]
        field = getattr(error, "field", None) or ERROR_FIELDS.get(body["error"])
        body = {**body, "error_description": description, "detail": description, "field": field}
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def _generate(self, client: _Client, scope: str | None, **_: Any) -> dict[str, Any]:
        allowed = client.record.scopes
        requested = set(scope.split()) if scope else set(allowed)
        if not requested <= allowed:
            raise InvalidScopeError(
                f"scopes not granted to this client: {sorted(requested - allowed)}"
            )
        granted = " ".join(name for name in ALL_SCOPES if name in requested)
        return sign_access_token(client.record, granted, self.keys, self.settings)


def _shown(value: str) -> str:
    """``value`` quoted, where an OAuth error description may hold it (RFC 6749 §5.2: printable
    ASCII but ``"`` and ``\\``)."""
    if all(" " <= char <= "~" and char not in '"\\' for char in value):
        return f"'{value[:64]}'"
    return "a value with characters an OAuth error cannot quote"


def _description(error: OAuth2Error) -> str:
    if isinstance(error, UnsupportedGrantTypeError):
        sent = _shown(error.grant_type) if error.grant_type else "none"
        return (
            "grant_type must be 'client_credentials', in a form body"
            f" (application/x-www-form-urlencoded); the request has {sent}"
        )
    return str(error.get_error_description())


def claimed_client_id(request: FormRequest) -> str:
    """The client id a token request claims, before any check ("" if it names none that could
    exist: malformed credentials, or an id longer than ours)."""
    try:
        client_id = _credentials(request)[1]
    except (InvalidRequestError, InvalidClientError):
        return ""
    return client_id if len(client_id) <= CLIENT_ID_MAX else ""


def _credentials(request: FormRequest) -> tuple[str, str, str]:
    """The authentication method, client ID and secret the client sent; one method only."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    basic = scheme.lower() == "basic"
    posted = "client_id" in request.form or "client_secret" in request.form
    if basic and posted:
        raise InvalidRequestError(
            "use one client authentication method: HTTP Basic or client_id and client_secret"
            " in the form, not both"
        )
    if not basic:
        form = request.form
        return "client_secret_post", form.get("client_id", ""), form.get("client_secret", "")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClientError(
            status_code=401,
            description="malformed HTTP Basic credentials: expected base64 of UTF-8 'id:secret'",
        ) from None
    client_id, _, secret = decoded.partition(":")
    return "client_secret_basic", unquote(client_id), unquote(secret)

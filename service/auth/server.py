"""authlib's framework-agnostic authorization server, adapted to FastAPI for one grant.

Only the client-credentials grant (RFC 6749 §4.4) is registered. Clients authenticate with
HTTP Basic or with ``client_id``/``client_secret`` in the form; the token is a signed JWT.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.auth.models import ALL_SCOPES, OAuthClient
from service.auth.service import get_client, secret_matches, sign_access_token
from service.config import Settings
from service.keys import SigningKeys

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


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

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class TokenServer(AuthorizationServer):  # type: ignore[misc]
    """Issues JWT access tokens to the clients stored in ``session``."""

    def __init__(self, session: Session, keys: SigningKeys, settings: Settings) -> None:
        super().__init__(scopes_supported=list(ALL_SCOPES))
        self.session = session
        self.keys = keys
        self.settings = settings
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> _Client | None:
        record = get_client(self.session, client_id) if client_id else None
        return _Client(record) if record else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs: nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal bus in this service."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> JSONResponse:
        if "error" in body:
            body = {**body, "detail": body.get("error_description", body["error"]), "field": None}
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

"""Dependencies shared by the routers, as ``Annotated`` aliases so routes stay short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import get_session
from service.keys import SigningKeys
from service.ratelimit import RateLimiter, TokenAttempts
from service.storage import EncryptedStore


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _signing_keys(request: Request) -> SigningKeys:
    keys: SigningKeys = request.app.state.signing_keys
    return keys


def _store(request: Request) -> EncryptedStore:
    store: EncryptedStore = request.app.state.store
    return store


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


def _token_attempts(request: Request) -> TokenAttempts:
    attempts: TokenAttempts = request.app.state.token_attempts
    return attempts


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
SigningKeysDep = Annotated[SigningKeys, Depends(_signing_keys)]
StoreDep = Annotated[EncryptedStore, Depends(_store)]
LimiterDep = Annotated[RateLimiter, Depends(_limiter)]
TokenAttemptsDep = Annotated[TokenAttempts, Depends(_token_attempts)]

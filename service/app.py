"""The FastAPI application factory: settings in, a wired app out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.agreements.router import router as agreements_router
from service.audit.router import router as audit_router
from service.auth.router import router as auth_router
from service.config import Settings, get_settings
from service.datasets.router import router as datasets_router
from service.db import make_engine, make_sessionmaker
from service.errors import ERROR_RESPONSES, error_response, install_error_handler
from service.extracts.jobs import Runtime
from service.extracts.pool import WorkerPool
from service.extracts.router import router as extracts_router
from service.keys import SigningKeys, StorageKeys
from service.partners.router import router as partners_router
from service.ratelimit import RateLimiter, TokenAttempts
from service.storage import EncryptedStore

DESCRIPTION = """
Partage shares sensitive datasets with partners as protected aggregates, under versioned
sharing agreements. Authenticate with OAuth2 client credentials at `POST /oauth/token`, then
send `Authorization: Bearer <access_token>`. Errors are `{"error", "detail", "field"}`.
"""


class BodySizeLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await error_response(HTTPException(413, self._detail()))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # An HTTPException passes through FastAPI's body parsing unchanged.
                raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"request body exceeds {self.limit} bytes"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the extract workers (recovering interrupted jobs first); stop them on shutdown."""
    pool: WorkerPool = app.state.pool
    pool.start()
    try:
        yield
    finally:
        pool.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app bound to ``settings``' database, keys and storage (the schema must be migrated)."""
    settings = settings or get_settings()
    app = FastAPI(title="Partage", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.signing_keys = SigningKeys(
        settings.keys_dir, settings.token_ttl_seconds, settings.signing_key_publish_days
    )
    app.state.store = EncryptedStore(settings.data_dir, StorageKeys(settings.keys_dir))
    app.state.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.token_attempts = TokenAttempts(
        settings.token_attempts_per_second,
        settings.token_attempts_burst,
        settings.token_failures_per_minute,
        settings.token_failures_burst,
    )
    app.state.pool = WorkerPool(
        Runtime(app.state.sessionmaker, app.state.store, app.state.signing_keys, settings)
    )
    install_error_handler(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes)
    app.include_router(auth_router)
    # Extracts before agreements: `/agreements/{id}/extracts` must not reach `/{id}/{action}`.
    routers = (partners_router, datasets_router, extracts_router, agreements_router, audit_router)
    for router in routers:
        app.include_router(router, responses=ERROR_RESPONSES)
    return app

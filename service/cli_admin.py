"""Administrators' commands: ``serve``, ``db upgrade``, ``admin create-client``, ``keys rotate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# Map every model before a session is used outside the app.
import service.models  # noqa: F401
from anonymization.errors import InvalidRequest
from service.agreements import service as agreements
from service.audit import service as audit
from service.auth.models import ALL_SCOPES, SCOPE_ADMIN
from service.auth.service import create_client, get_client
from service.config import Settings, get_settings
from service.console import fail
from service.datasets import service as datasets
from service.db import make_engine, make_sessionmaker
from service.keys import SigningKeys, StorageKeys, write_private_json
from service.migrate import upgrade
from service.storage import EncryptedStore

console = Console()
db_app = typer.Typer(no_args_is_help=True, help="The metadata database.")
admin_app = typer.Typer(no_args_is_help=True, help="Administrators' OAuth2 clients.")
keys_app = typer.Typer(no_args_is_help=True, help="Signing and storage keys.")


def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
) -> None:
    """Migrate the database, then serve the API (docs at /docs)."""
    import uvicorn

    from service.app import create_app

    settings = get_settings()
    upgrade(settings.database_url)
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to PARTAGE_DATABASE_URL."""
    upgrade(get_settings().database_url)
    console.print("database schema is up to date")


def _existing_credentials(settings: Settings, save: Path) -> dict[str, str] | None:
    if not save.is_file():
        return None
    saved: dict[str, str] = json.loads(save.read_text(encoding="utf-8"))
    with make_sessionmaker(make_engine(settings.database_url))() as session:
        return saved if get_client(session, saved.get("client_id", "")) else None


@admin_app.command("create-client")
def admin_create_client(
    name: Annotated[str, typer.Argument(help="a name for the client")],
    scope: Annotated[str, typer.Option(help="space-separated scopes")] = SCOPE_ADMIN,
    save: Annotated[
        Path | None,
        typer.Option(help="keep the credentials in this file (0600); reuse them if still valid"),
    ] = None,
) -> None:
    """Create an OAuth2 client and print its client_id and secret (the secret is shown once)."""
    settings = get_settings()
    scopes = tuple(scope.split())
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        detail = f"unknown scope(s) {unknown}; choose from {', '.join(ALL_SCOPES)}"
        raise fail(InvalidRequest(detail, field="scope"))
    credentials = _existing_credentials(settings, save) if save else None
    if credentials is None:
        with make_sessionmaker(make_engine(settings.database_url))() as session:
            client, secret = create_client(session, name, scopes)
            audit.append(
                session, "cli", "client.created", f"client:{client.client_id}", {"scope": scope}
            )
            credentials = {"client_id": client.client_id, "client_secret": secret}
            session.commit()
        if save:
            write_private_json(save, credentials)
    console.print(f"client_id:     {credentials['client_id']}")
    console.print(f"client_secret: {credentials['client_secret']}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new token signing key; older keys stay in the JWKS until their tokens expire."""
    settings = get_settings()
    kid = SigningKeys(
        settings.keys_dir, settings.token_ttl_seconds, settings.signing_key_publish_days
    ).rotate()
    console.print(f"new signing key {kid}")


@keys_app.command("rotate-storage")
def keys_rotate_storage() -> None:
    """Add a storage key, re-wrap every dataset's data key and every agreement's pseudonym key
    with it, then drop the old keys."""
    settings = get_settings()
    storage_keys = StorageKeys(settings.keys_dir)
    kid = storage_keys.add()
    store = EncryptedStore(settings.data_dir, storage_keys)
    with make_sessionmaker(make_engine(settings.database_url))() as session:
        count = datasets.rewrap_all(session, store)
        pseudonyms = agreements.rewrap_pseudonym_keys(session, store)
        session.commit()
    retired = storage_keys.retire_all_but_current()
    console.print(
        f"new storage key {kid}: {count} data key(s) re-wrapped, {pseudonyms} pseudonym "
        f"key(s) re-wrapped, {len(retired)} retired",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add the administrators' commands to the ``partage`` app."""
    app.command("serve")(serve)
    app.add_typer(db_app, name="db")
    app.add_typer(admin_app, name="admin")
    app.add_typer(keys_app, name="keys")

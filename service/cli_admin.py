"""Administrators' commands: ``serve``, ``db upgrade``, ``admin create-client``, ``keys rotate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

# Map every model before a session is used outside the app.
import service.models  # noqa: F401
from anonymization.errors import InvalidRequest, invalid_field
from policies.text import Name
from service.agreements import service as agreements
from service.agreements.models import Agreement
from service.audit import service as audit
from service.auth.models import ALL_SCOPES, SCOPE_ADMIN
from service.auth.service import create_client, get_client
from service.cli_environment import migrate, service_command, sessions, settings
from service.console import check_directory
from service.datasets import service as datasets
from service.datasets.models import Dataset
from service.extracts import files
from service.keys import NextStorageKeys, SigningKeys, StorageKeys, write_private_json
from service.serving import only_server
from service.storage import EncryptedStore, StorageError

console = Console()
db_app = typer.Typer(no_args_is_help=True, help="The metadata database.")
admin_app = typer.Typer(no_args_is_help=True, help="Administrators' OAuth2 clients.")
keys_app = typer.Typer(no_args_is_help=True, help="Signing and storage keys.")
CLIENT_NAME: TypeAdapter[str] = TypeAdapter(Name)


@service_command
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default 8000)")] = None,
) -> None:
    """Migrate the database, then serve the API (docs at /docs)."""
    import uvicorn

    from service.app import create_app

    current = settings()
    migrate(current)
    # The client's address is the TCP peer's: uvicorn would otherwise take X-Forwarded-For (and
    # X-Forwarded-Proto) from any peer on 127.0.0.1, so a client on the host, or one whose
    # headers a local proxy passes on, would pick the address the token limits count.
    with only_server(current.database_url):
        uvicorn.run(
            create_app(current),
            host=host or current.host,
            port=port or current.port,
            proxy_headers=False,
        )


@db_app.command("upgrade")
@service_command
def db_upgrade() -> None:
    """Apply every pending migration to PARTAGE_DATABASE_URL."""
    migrate(settings())
    console.print("database schema is up to date")


def _saved_credentials(save: Path) -> dict[str, str] | None:
    """The credentials kept in ``save`` (None: no file yet), once it is known the file can be
    written; a file holding anything else is refused rather than overwritten."""
    if save.is_dir():
        raise InvalidRequest(f"{save} is a directory: give a file name", field="--save")
    check_directory(save.parent, "--save")
    if not save.exists():
        return None
    try:
        saved = json.loads(save.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidRequest(f"cannot read {save}: {error.strerror}", field="--save") from None
    except ValueError:  # not UTF-8, not JSON
        saved = None
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("client_id"), str)
        and isinstance(saved.get("client_secret"), str)
    ):
        detail = (
            f"{save} does not hold saved credentials (a JSON object with client_id and "
            "client_secret): give another file, it would be overwritten"
        )
        raise InvalidRequest(detail, field="--save")
    return saved


@admin_app.command("create-client")
@service_command
def admin_create_client(
    name: Annotated[str, typer.Argument(help="a name for the client")],
    scope: Annotated[str, typer.Option(help="space-separated scopes")] = SCOPE_ADMIN,
    save: Annotated[
        Path | None,
        typer.Option(help="keep the credentials in this file (0600); reuse them if still valid"),
    ] = None,
) -> None:
    """Create an OAuth2 client and print its client_id and secret (the secret is shown once)."""
    name = _client_name(name)
    scopes = tuple(scope.split())
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        detail = f"unknown scope(s) {unknown}; choose from {', '.join(ALL_SCOPES)}"
        raise InvalidRequest(detail, field="scope")
    saved = _saved_credentials(save) if save is not None else None
    with sessions(settings())() as session:
        if saved is not None and get_client(session, saved["client_id"]):
            credentials = saved
        else:
            client, secret = create_client(session, name, scopes)
            audit.append(
                session, "cli", "client.created", f"client:{client.client_id}", {"scope": scope}
            )
            credentials = {"client_id": client.client_id, "client_secret": secret}
            session.flush()
            # Saved before the commit: a client is never created whose secret is lost.
            if save is not None:
                _save(save, credentials)
            session.commit()
    console.print(f"client_id:     {credentials['client_id']}")
    console.print(f"client_secret: {credentials['client_secret']}")


def _client_name(name: str) -> str:
    """The name checked as the API checks a partner's (trimmed, NFC, 1 to 200 characters, no
    control characters): an argument that is not UTF-8 arrives with lone surrogates, which no
    database can store."""
    try:
        return CLIENT_NAME.validate_python(name)
    except ValidationError as error:
        raise invalid_field(error, default="name") from None


def _save(save: Path, credentials: dict[str, str]) -> None:
    try:
        write_private_json(save, credentials)
    except OSError as error:
        detail = f"cannot write {save}: {error.strerror}; no client was created"
        raise InvalidRequest(detail, field="--save") from None


@keys_app.command("rotate")
@service_command
def keys_rotate() -> None:
    """Add a new token signing key; older keys stay in the JWKS until their tokens expire.
    The audit log records it (``signing_key.rotated``)."""
    current = settings()
    keys = SigningKeys(
        current.keys_dir, current.token_ttl_seconds, current.signing_key_publish_days
    )
    with sessions(current)() as session:
        # The chain's head locked first: a database that cannot record it stops before the key.
        audit.lock_head(session)
        kid = keys.rotate()
        audit.append(session, "cli", "signing_key.rotated", f"signing_key:{kid}", {"key_id": kid})
        session.commit()
    console.print(f"new signing key {kid}")


@keys_app.command("rotate-storage")
@service_command
def keys_rotate_storage() -> None:
    """Add a storage key and re-wrap every wrapped key with it (datasets' data keys and noise
    secrets, pseudonym keys, release files) in one transaction, then delete the old keys
    nothing uses any more."""
    current = settings()
    upcoming = NextStorageKeys(current.keys_dir)
    store = EncryptedStore(current.data_dir, upcoming)
    with sessions(current)() as session:
        try:
            counts = {
                "datasets": datasets.rewrap_all(session, store),
                "pseudonym_keys": agreements.rewrap_pseudonym_keys(session, store),
                "release_files": files.rewrap_all(session, store),
            }
        except StorageError as error:
            detail = f"{error}; nothing re-wrapped, no key added or retired"
            raise InvalidRequest(detail, field="storage", code="unwrap_failed") from None
        audit.append(
            session,
            "cli",
            "storage_key.rotated",
            f"storage_key:{upcoming.kid}",
            {"key_id": upcoming.kid, **counts},
        )
        # Saved before the commit: a committed row must never name a key that is not on disk.
        upcoming.save()
        session.commit()
        keep = _still_needed(session, upcoming)
    retired = upcoming.retire_all_but_current(keep=keep)
    kept = [key.kid for key in upcoming.directory.load() if key.kid != upcoming.kid]
    console.print(
        f"new storage key {upcoming.kid}: {counts['datasets']} dataset key(s), "
        f"{counts['pseudonym_keys']} pseudonym key(s), {counts['release_files']} release file "
        f"key(s) re-wrapped; {len(retired)} old key(s) retired"
        + (f", {len(kept)} kept (still in use: run it again later)" if kept else ""),
        soft_wrap=True,
    )


def _still_needed(session: Session, keys: StorageKeys) -> frozenset[str]:
    """The storage keys rows committed since the re-wrap name (written by the service while
    this ran), or every key while a release job runs (its files' keys are not committed yet)."""
    if files.job_running(session):
        return frozenset(key.kid for key in keys.directory.load())
    in_use = set(session.scalars(select(Dataset.key_id)))
    in_use.update(session.scalars(select(Dataset.noise_key_id)))
    in_use.update(session.scalars(select(Agreement.pseudonym_key_id)))
    in_use.discard(None)
    return frozenset(str(kid) for kid in in_use) | files.key_ids_in_use(session)


def register(app: typer.Typer) -> None:
    """Add the administrators' commands to the ``partage`` app."""
    app.command("serve")(serve)
    app.add_typer(db_app, name="db")
    app.add_typer(admin_app, name="admin")
    app.add_typer(keys_app, name="keys")

"""Commands around releases and the audit log: ``verify``, ``audit-log``, ``releases``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

import service.models  # noqa: F401  (map every model before a session is used)
from anonymization.errors import InvalidRequest
from service.audit import service as audit
from service.cli_environment import service_command, sessions, settings
from service.config import Settings
from service.extracts import jobs, upkeep
from service.extracts.manifest import verify_release
from service.keys import SigningKeys, StorageKeys
from service.signatures import SignatureError
from service.storage import EncryptedStore

console = Console(soft_wrap=True)
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
releases_app = typer.Typer(no_args_is_help=True, help="Released extracts.")


def _keys(settings: Settings) -> SigningKeys:
    return SigningKeys(
        settings.keys_dir, settings.token_ttl_seconds, settings.signing_key_publish_days
    )


def _runtime(settings: Settings) -> jobs.Runtime:
    store = EncryptedStore(settings.data_dir, StorageKeys(settings.keys_dir))
    return jobs.Runtime(sessions(settings), store, _keys(settings), settings)


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose members are named once each: readers disagree on which of two counts,
    and a signature over canonical JSON (RFC 8785, I-JSON) covers one only."""
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise ValueError(f"member {name!r} appears twice")
        members[name] = value
    return members


def _load_json(source: str, field: str) -> Any:
    """JSON from a file, or fetched from an http(s) URL; a member named twice is refused."""
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=10)
            response.raise_for_status()
            return json.loads(response.text, object_pairs_hook=_unique_members)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
            raise InvalidRequest(f"cannot fetch {source} as JSON: {error}", field=field) from None
    try:
        text = Path(source).read_text(encoding="utf-8")
        return json.loads(text, object_pairs_hook=_unique_members)
    except (OSError, ValueError) as error:
        raise InvalidRequest(f"cannot read {source} as JSON: {error}", field=field) from None


def _jwks(source: str) -> dict[str, Any]:
    jwks = _load_json(source, "--jwks")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
        detail = f"{source} is not a JWKS (a JSON object whose 'keys' is a list of keys)"
        raise InvalidRequest(detail, field="--jwks")
    return dict(jwks)


@service_command
def verify(
    manifest: Annotated[Path, typer.Argument(help="the release's manifest.json")],
    release: Annotated[Path, typer.Argument(help="the downloaded release file")],
    jwks: Annotated[
        str | None,
        typer.Option(help="the service's JWKS: a file or a URL (default: this service's)"),
    ] = None,
) -> None:
    """Check a release offline: the manifest's Ed25519 signature and the file's SHA-256."""
    current = settings()
    source = jwks or f"http://{current.host}:{current.port}/.well-known/jwks.json"
    document = _load_json(str(manifest), "MANIFEST")
    if not isinstance(document, dict):
        raise InvalidRequest(
            f"{manifest} is not a release manifest (a JSON object)", field="MANIFEST"
        )
    if not release.is_file():
        raise InvalidRequest(f"no such file {release}", field="RELEASE")
    try:
        kid, fmt = verify_release(document, _jwks(source), release)
    except SignatureError as error:
        console.print(f"[bold red]NOT VERIFIED[/]: {error}")
        raise typer.Exit(code=1) from None
    console.print(
        f"verified: {release.name} is the {fmt} output of extract {document.get('extract_id')}"
        f" (agreement {document['agreement']['id']} v{document['agreement']['version']}),"
        f" manifest signed by key {kid}"
    )


@audit_app.command("verify")
@service_command
def audit_verify() -> None:
    """Recompute the whole chain and check every signed head; exit 1 naming the first break."""
    runtime = _runtime(settings())
    with runtime.sessions() as session:
        report = audit.verify_chain(session, runtime.keys)
    if not report.intact:
        where = "" if report.broken_at is None else f" at entry {report.broken_at}"
        console.print(f"[bold red]BROKEN[/]{where}: {report.problem}")
        raise typer.Exit(code=1)
    console.print(
        f"intact: {report.entries} entries, head at {report.head_seq}, "
        f"{report.signatures} signed head(s) verified"
    )


@audit_app.command("sign")
@service_command
def audit_sign() -> None:
    """Sign the chain's current head with the service's signing key."""
    seq = upkeep.sign_audit_head(_runtime(settings()))
    console.print(f"signed the head at entry {seq}" if seq else "the head is already signed")


@releases_app.command("expire")
@service_command
def releases_expire() -> None:
    """Expire releases past their retention now (files deleted, records kept)."""
    count = upkeep.expire_due(_runtime(settings()))
    console.print(f"{count} release(s) expired")


def register(app: typer.Typer) -> None:
    """Add the release and audit commands to the ``partage`` app."""
    app.command("verify")(verify)
    app.add_typer(audit_app, name="audit-log")
    app.add_typer(releases_app, name="releases")

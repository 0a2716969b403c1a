"""``partage audit``: re-run a release's audit from its published files alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from anonymization.errors import AuditFailure, InvalidRequest
from service.console import handled, stderr

if TYPE_CHECKING:
    import pandas as pd


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest's JSON document."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(
            f"cannot read the manifest {path}: {error}", field="manifest"
        ) from None
    if not isinstance(document, dict):
        raise InvalidRequest("the manifest must be a JSON object", field="manifest")
    return document


def read_table(path: Path, manifest: dict[str, Any]) -> pd.DataFrame:
    """The published table, checked against the manifest's hash, codes kept as text."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"cannot read {path}: {error.strerror}", field="table") from None
    expected = manifest.get("output", {}).get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise AuditFailure(f"{path.name} is not the table the manifest describes (SHA-256 differs)")
    fmt = manifest.get("output", {}).get("format", path.suffix.lstrip(".").lower())
    dims = dict.fromkeys(manifest.get("plan", {}).get("dimensions", {}), str)
    import pandas as pd

    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "json":
            return pd.read_json(path, dtype=dims)
        return pd.read_csv(
            path, dtype={**dims, "status": str, "reason": str}, keep_default_na=False
        )
    except (ValueError, OSError) as error:
        raise InvalidRequest(f"cannot parse {path}: {error}", field="table") from None


def audit(
    table: Annotated[Path, typer.Argument(help="the published table (CSV, Parquet or JSON)")],
    manifest: Annotated[Path, typer.Option("--manifest", help="the release's manifest")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Recompute every suppressed cell's interval from the published files alone."""
    from anonymization.reaudit import reaudit  # the LP machinery, loaded for this command only

    with handled(quiet, "audit") as progress:
        document = read_manifest(manifest)
        result = reaudit(read_table(table, document), document, progress)
    stderr.print(
        f"audit passed: {result.cells} cells, {result.suppressed} suppressed, "
        f"{result.protected} protected cells hold their required interval",
        highlight=False,
    )

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

    from anonymization.reaudit import Manifest


def read_json(path: Path) -> dict[str, Any]:
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


def read_table(path: Path, manifest: Manifest) -> pd.DataFrame:
    """The published table, checked against the manifest's hash, codes kept as text."""
    if manifest.output is None:
        raise InvalidRequest(
            "is missing: the table cannot be checked against the manifest", field="manifest.output"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"cannot read {path}: {error.strerror}", field="table") from None
    if hashlib.sha256(data).hexdigest() != manifest.output.sha256:
        raise AuditFailure(f"{path.name} is not the table the manifest describes (SHA-256 differs)")
    dims = dict.fromkeys(manifest.dims, str)
    import pandas as pd

    try:
        if manifest.output.format == "parquet":
            return pd.read_parquet(path)
        if manifest.output.format == "json":
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
    # The LP machinery, loaded for this command only.
    from anonymization.reaudit import read_manifest, reaudit

    with handled(quiet, "audit") as progress:
        document = read_manifest(read_json(manifest))
        result = reaudit(read_table(table, document), document, progress)
    stderr.print(
        f"audit passed: {result.cells} cells, {result.suppressed} suppressed, "
        f"{result.protected} protected cells hold their required interval"
        + ("" if result.subjects else " (subjects are not published: only the sums audited)")
        + (
            f" (protected jointly with {result.held} held release(s): the intervals this table "
            "gives alone contain the manifest's; the joint ones need the held releases' files)"
            if result.held
            else ""
        ),
        highlight=False,
    )

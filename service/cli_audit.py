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

    from anonymization.hierarchies import Hierarchy
    from anonymization.manifest import Manifest
    from anonymization.reaudit import ReauditResult


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
    """The published table, checked against the manifest's hash (an offline release's
    ``output``, or one of the service's ``outputs``), codes kept as text."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"cannot read {path}: {error.strerror}", field="table") from None
    digest = hashlib.sha256(data).hexdigest()
    if manifest.output is not None:
        if digest != manifest.output.sha256:
            raise AuditFailure(
                f"{path.name} is not the table the manifest describes (SHA-256 differs)"
            )
        fmt = manifest.output.format
    elif manifest.outputs:
        found = [name for name, record in manifest.outputs.items() if record.sha256 == digest]
        if not found:
            raise AuditFailure(
                f"{path.name} is none of the manifest's outputs ({', '.join(manifest.outputs)}):"
                " SHA-256 differs"
            )
        fmt = found[0]
    else:
        raise InvalidRequest(
            "is missing: the table cannot be checked against the manifest", field="manifest.output"
        )
    dims = dict.fromkeys(manifest.dims, str)
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
    held: Annotated[
        list[Path] | None,
        typer.Option(
            "--held",
            help="a table the partner held when this release was made (repeat; each with its "
            "--held-manifest, in the same order)",
        ),
    ] = None,
    held_manifests: Annotated[
        list[Path] | None,
        typer.Option("--held-manifest", help="the manifest of each --held table, in order"),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="the policy whose hierarchies relate releases grouping a dimension at "
            "different levels (needed only then)",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Recompute every suppressed cell's interval from the published files alone (with --held,
    jointly with the releases the partner already held)."""
    # The LP machinery, loaded for this command only.
    from anonymization.reaudit import reaudit

    tables, manifests = held or [], held_manifests or []
    with handled(quiet, "audit") as progress:
        if len(tables) != len(manifests):
            raise InvalidRequest(
                f"{len(tables)} --held table(s) but {len(manifests)} --held-manifest: give one "
                "manifest per held table, in the same order",
                field="--held-manifest",
            )
        document = _manifest(manifest)
        others = [
            _held(index, *pair) for index, pair in enumerate(zip(tables, manifests, strict=True))
        ]
        hierarchies = _hierarchies(policy_file) if policy_file is not None else None
        result = reaudit(read_table(table, document), document, progress, others, hierarchies)
    stderr.print(_summary(result), highlight=False)


def _held(index: int, table: Path, manifest: Path) -> tuple[pd.DataFrame, Manifest]:
    """One held release's files, read and checked as the audited one's are; an error names
    the file."""
    try:
        document = _manifest(manifest)
        return read_table(table, document), document
    except (InvalidRequest, AuditFailure) as error:
        raise type(error)(
            f"held release {index + 1} ({table.name}, {manifest.name}): {error.detail}",
            field=f"held.{index}.{error.field}" if error.field else f"held.{index}",
        ) from None


def _manifest(path: Path) -> Manifest:
    """A release's manifest as the audit reads it; it must name the data the release was
    made from, which ties held releases to it only when made from the same data."""
    from anonymization.manifest import read_manifest

    document = read_manifest(read_json(path))
    if document.data is None:
        raise InvalidRequest(
            "the manifest does not name the data the release was made from "
            "(input.digest offline, dataset.id from the service)",
            field="manifest.input",
        )
    return document


def _hierarchies(path: Path) -> dict[str, Hierarchy]:
    """The hierarchies the policy declares, keyed by column."""
    from policies.files import parse, read_document
    from policies.models import Policy, load_hierarchies

    policy = parse(Policy, read_document(path))
    return load_hierarchies(policy, path.parent)


def _summary(result: ReauditResult) -> str:
    """What the audit checked, in one sentence."""
    text = (
        f"audit passed: {result.cells} cells, {result.suppressed} suppressed, "
        f"{result.protected} protected cells hold their required interval"
    )
    if not result.subjects:
        text += " (subjects are not published: only the sums audited)"
    if result.joined:
        text += f"; jointly with {result.joined} held release(s): " + (
            "the intervals equal the manifest's"
            if result.exact
            else "the intervals these files give contain the manifest's (the engine's LP read "
            f"{result.held} held release(s)"
            + (", and of the cover table only the cells with data)" if result.cover else ")")
        )
    elif result.held:
        text += (
            f" (protected jointly with {result.held} held release(s): the intervals this table "
            "gives alone contain the manifest's; the joint ones need the held releases' files, "
            "--held)"
        )
    if result.other_populations:
        text += (
            f"; {result.other_populations} held release(s) of other filters: not in the LP "
            "(the engine checks them by counting, with the data)"
        )
    return text

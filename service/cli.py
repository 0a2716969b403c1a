"""The ``partage`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from anonymization.release import OutputFormat, Release, run_release, serialize, sha256_hex
from policies.files import digest, parse, read_document
from policies.models import ExtractRequest, Policy, load_hierarchies
from policies.requests import build_plan, check_policy
from service.cli_admin import register
from service.cli_microdata import anonymize
from service.console import handled, stderr, write_atomically
from service.demo.cli import demo

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Partage: privacy-preserving data sharing for territories.",
)
app.add_typer(demo, name="demo")
register(app)


@app.callback()
def partage() -> None:
    """Partage: release protected extracts of sensitive data, offline or as a service."""


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    import hashlib

    with path.open("rb") as stream:
        return "sha256:" + hashlib.file_digest(stream, "sha256").hexdigest()


def release_manifest(
    release: Release,
    request: ExtractRequest,
    policy: Policy,
    data: Path,
    output: bytes,
    fmt: OutputFormat,
) -> dict[str, Any]:
    """The manifest of an offline release."""
    return {
        "request": request.model_dump(mode="json", by_alias=True, exclude_none=True),
        "policy_digest": digest(policy.model_dump(mode="json")),
        "input": {"file": data.name, "digest": file_digest(data)},
        **release.summary(),
        "output": {"format": fmt, "sha256": sha256_hex(output)},
    }


@app.command("release")
def release_command(
    data: Annotated[Path, typer.Argument(help="the sensitive table: CSV (with header) or Parquet")],
    policy_file: Annotated[Path, typer.Option("--policy", help="policy YAML/JSON")],
    request_file: Annotated[Path, typer.Option("--request", help="extract request YAML/JSON")],
    out: Annotated[Path, typer.Option("--out", help="where to write the protected table")],
    fmt: Annotated[
        OutputFormat | None,
        typer.Option("--format", help="csv, parquet or json (default: the request's format)"),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="where to write the manifest")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Release a protected aggregated extract of DATA under a policy."""
    with handled(quiet, "release") as progress:
        policy = parse(Policy, read_document(policy_file))
        hierarchies = load_hierarchies(policy, policy_file.parent)
        check_policy(policy, hierarchies)
        request = parse(ExtractRequest, read_document(request_file))
        if fmt is not None:
            request = request.model_copy(update={"format": fmt})
        plan = build_plan(policy, hierarchies, request)
        release = run_release(data, plan, progress)
        output = serialize(release.table, request.format)
        document = release_manifest(release, request, policy, data, output, request.format)
        progress("writing")
        write_atomically(out, output)
        if manifest is not None:
            write_atomically(manifest, json.dumps(document, indent=2, ensure_ascii=False).encode())
    if not quiet:
        counts = release.counts()
        reasons = (
            ", ".join(f"{k}: {v}" for k, v in counts["suppressed_by_reason"].items()) or "none"
        )
        stderr.print(
            f"{counts['cells']} cells: {counts['released']} released, "
            f"{counts['suppressed']} suppressed ({reasons}) → {out}",
            highlight=False,
        )


app.command("anonymize")(anonymize)


def main() -> None:
    """Entry point of the ``partage`` console script."""
    app()

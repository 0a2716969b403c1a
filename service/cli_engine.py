"""The ``partage`` commands that need only the engine: ``release``, ``anonymize``, ``audit``."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from anonymization.cells import compute_cells
from anonymization.errors import InvalidRequest, PartageError
from anonymization.hierarchies import Hierarchy
from anonymization.plan import AggregatePlan
from policies.files import digest, parse, read_document
from policies.models import ExtractRequest, OutputFormat, Policy, load_hierarchies
from policies.requests import build_plan, check_policy
from service.cli_audit import audit
from service.cli_microdata import anonymize
from service.console import (
    LedgerOption,
    PartnerOption,
    check_outputs,
    check_partner,
    file_digest,
    handled,
    refuse_if_held_elsewhere,
    stderr,
    write_atomically,
)
from service.secret_files import read_secret_file

if TYPE_CHECKING:
    import pandas as pd

    from anonymization.ledger import SQLiteLedger
    from anonymization.release import Held, Release

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Partage: privacy-preserving data sharing for territories.",
)


@app.callback()
def partage() -> None:
    """Partage: release protected extracts of sensitive data, offline or as a service."""


def request_document(request: ExtractRequest) -> dict[str, Any]:
    """The request as the manifest and the ledger keep it."""
    return request.model_dump(mode="json", by_alias=True, exclude_none=True)


def release_manifest(
    release: Release,
    request: ExtractRequest,
    policy: Policy,
    data: Path,
    data_digest: str,
    output: bytes,
    fmt: OutputFormat,
) -> dict[str, Any]:
    """The manifest of an offline release (``data_digest``: :func:`file_digest` of ``data``)."""
    from anonymization.release import sha256_hex

    return {
        "request": request_document(request),
        "policy_digest": digest(policy.model_dump(mode="json")),
        "input": {"file": data.name, "digest": data_digest},
        **release.summary(),
        "output": {"format": fmt, "sha256": sha256_hex(output)},
    }


def held_releases(
    ledger: SQLiteLedger | None,
    partner: str,
    dataset: str,
    policy: Policy,
    hierarchies: dict[str, Hierarchy],
) -> list[Held]:
    """What the partner already holds of this dataset, each with its plan rebuilt."""
    if ledger is None:
        return []
    held: list[Held] = []
    for number, entry in enumerate(ledger.held(partner, dataset), start=1):
        try:
            request = parse(ExtractRequest, entry.request, prefix="ledger")
            held.append((entry, build_plan(policy, hierarchies, request)))
        except PartageError as error:
            # The partner holds it whatever this policy now allows: it cannot be left out.
            raise InvalidRequest(
                f"release {number} that {partner!r} holds in the ledger cannot be read under "
                f"this policy ({error.field}: {error.detail}); release with the policy it was "
                "made under, or a new ledger for a new agreement",
                field="ledger",
                code=error.code,
            ) from None
    return held


def aggregate(
    data: Path,
    plan: AggregatePlan,
    progress: Callable[[str], None],
    solver: bool,
    fmt: OutputFormat,
    noise_secret: bytes | None = None,
) -> pd.DataFrame:
    """The cells of ``plan`` over ``data``. DuckDB scans outside the GIL, so the rest of the
    engine (pandas, the ``fmt`` writer; with ``solver``, SciPy and HiGHS too) is imported
    while the scan runs."""
    progress("aggregating")
    with ThreadPoolExecutor(max_workers=1) as pool:
        cells = pool.submit(compute_cells, data, plan, noise_secret)
        import anonymization.release

        if fmt == "parquet":
            import pyarrow.parquet  # noqa: F401
        if solver:
            import anonymization.suppression  # noqa: F401

        return cells.result()


def record(
    ledger: SQLiteLedger | None,
    partner: str,
    release: Release,
    dataset: str,
    request: ExtractRequest,
    read: int,
) -> None:
    """Remember in the ledger, if there is one, that the partner now holds ``release``
    (refused if another release to the partner was recorded since it held ``read``)."""
    if ledger is None:
        return
    ledger.record(partner, release.held(dataset, request_document(request)), read)


NOISE_SECRET_BYTES = 16


def read_noise_secret(path: Path | None) -> bytes:
    """The dataset's noise secret: the file's bytes (less a trailing line ending), at least
    16 of them; the secret keys the subjects' record keys and is never written anywhere."""
    field = "--noise-secret-file"
    if path is None:
        raise InvalidRequest(
            "the policy adds noise (protection.noise): give its secret", field=field
        )
    secret = read_secret_file(path, field)
    if len(secret) < NOISE_SECRET_BYTES:
        raise InvalidRequest(
            f"{path} holds {len(secret)} bytes: a noise secret needs at least "
            f"{NOISE_SECRET_BYTES} (e.g. `head -c 32 /dev/urandom > {path.name}`)",
            field=field,
        )
    return secret


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
    ledger_file: LedgerOption = None,
    partner: PartnerOption = "default",
    noise_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--noise-secret-file",
            help="the dataset's secret for consistent noise (needed when the policy adds noise)",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Release a protected aggregated extract of DATA under a policy."""
    with handled(quiet, "release") as progress:
        check_outputs(
            {"--out": out, "--manifest": manifest},
            {
                "DATA": data,
                "--policy": policy_file,
                "--request": request_file,
                "--ledger": ledger_file,
                "--noise-secret-file": noise_secret_file,
            },
        )
        check_partner(partner)
        policy = parse(Policy, read_document(policy_file))
        hierarchies = load_hierarchies(policy, policy_file.parent)
        check_policy(policy, hierarchies)
        request = parse(ExtractRequest, read_document(request_file))
        if fmt is not None:
            request = request.model_copy(update={"format": fmt})
        plan = build_plan(policy, hierarchies, request)
        secret = read_noise_secret(noise_secret_file) if plan.protection.noise else None
        solver = plan.totals or ledger_file is not None
        cells = aggregate(data, plan, progress, solver, request.format, secret)
        from anonymization.ledger import SQLiteLedger
        from anonymization.release import run_release, serialize

        ledger = SQLiteLedger(ledger_file) if ledger_file is not None else None
        # Read once: the ledger's key of the data and the manifest's input digest.
        dataset = file_digest(data) if ledger is not None or manifest is not None else ""
        read = ledger.recorded(partner) if ledger is not None else 0
        if ledger is not None:
            refuse_if_held_elsewhere(ledger, partner, dataset.removeprefix("sha256:"), "aggregate")
        held = held_releases(ledger, partner, dataset, policy, hierarchies)
        release = run_release(data, plan, progress, held, cells)
        output = serialize(release.table, request.format)
        progress("writing")
        files: dict[str, tuple[Path, bytes]] = {"--out": (out, output)}
        if manifest is not None:
            document = release_manifest(
                release, request, policy, data, dataset, output, request.format
            )
            # One line: JSON's C encoder only runs without indentation (``jq .`` pretty-prints).
            text = json.dumps(document, ensure_ascii=False) + "\n"
            files["--manifest"] = (manifest, text.encode())
        # Recorded once both files are written and before they are put in place: the ledger
        # never holds a release the partner did not get, nor the partner one it does not hold.
        write_atomically(files, lambda: record(ledger, partner, release, dataset, request, read))
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
app.command("audit")(audit)

"""``partage demo generate``: realistic synthetic French data to try Partage on."""

from __future__ import annotations

import enum
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import service.models  # noqa: F401  (maps every model before a session is used)
from service.cli_environment import service_command, sessions, settings
from service.console import check_directory
from service.demo.consumption import ConsumptionGenerator
from service.demo.generate import CSV_MAX_ROWS, Generated, Generator, generate
from service.demo.payments import PaymentsGenerator
from service.demo.reference import communes
from service.keys import StorageKeys
from service.storage import EncryptedStore

demo = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Synthetic French demo data (fixed seed)."
)
stderr = Console(stderr=True)


# Past a billion rows a run takes hours and tens of gigabytes: the bound of --rows and of the
# readings (--meters × --days).
MAX_ROWS = 1_000_000_000


@contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """Let SIGTERM stop a run as Ctrl-C does (the writers remove their partial files), with the
    exit code of a terminated process."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Dataset(enum.StrEnum):
    """Which demo dataset to generate."""

    payments = "payments"
    consumption = "consumption"
    all = "all"


def _territory(value: str) -> list[str]:
    codes = [code.strip().upper() for code in value.split(",") if code.strip()]
    known = set(communes().departements.tolist())
    unknown = [code for code in codes if code not in known]
    if not codes or unknown:
        raise typer.BadParameter(f"unknown département code(s): {', '.join(unknown) or value!r}")
    return codes


@demo.command("generate")
@service_command
def generate_command(
    out: Annotated[Path, typer.Option("--out", help="directory to write the files into")],
    dataset: Annotated[Dataset, typer.Option(help="which dataset to generate")] = Dataset.all,
    rows: Annotated[
        int, typer.Option(min=1, max=MAX_ROWS, help="card payments to generate")
    ] = 1_000_000,
    meters: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="smart meters")] = 2_000,
    days: Annotated[int, typer.Option(min=1, max=3_660, help="daily readings per meter")] = 365,
    departements: Annotated[
        str, typer.Option(help="the distributor's territory: département codes, comma-separated")
    ] = "74",
    seed: Annotated[int, typer.Option(min=0, help="same seed and sizes, same files")] = 2025,
    csv: Annotated[
        bool | None,
        typer.Option(
            "--csv/--no-csv",
            help=f"also write CSV (default: when the dataset has at most {CSV_MAX_ROWS:,} rows)",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Write payments.parquet/.csv (foreign visitors' card payments) and consumption.parquet/.csv
    (daily smart-meter readings) into OUT."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a directory", param_hint="--out")
    check_directory(out, "--out")
    generators: dict[str, Generator] = {}
    if dataset in (Dataset.payments, Dataset.all):
        generators["payments"] = PaymentsGenerator(rows, seed)
    if dataset in (Dataset.consumption, Dataset.all):
        if meters * days > MAX_ROWS:
            detail = f"{meters:,} meters × {days:,} days is over {MAX_ROWS:,} readings"
            raise typer.BadParameter(detail, param_hint="--meters")
        territory = _territory(departements)
        generators["consumption"] = ConsumptionGenerator(meters, days, seed, territory)
    with (
        Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            disable=quiet,
        ) as progress,
        terminated_as_interrupted(),
    ):
        results: list[Generated] = []
        for name, generator in generators.items():
            task = progress.add_task(name, total=generator.rows)
            results.append(generate(generator, out, name, csv, partial(progress.advance, task)))
    if not quiet:
        for result in results:
            files = ", ".join(str(path) for path in result.paths)
            stderr.print(
                f"{result.name}: {result.rows:,} rows in {result.seconds:.1f} s → {files}",
                highlight=False,
            )


@demo.command("load")
@service_command
def load_command(
    data_dir: Annotated[
        Path, typer.Option(help="where the demo files are, generated there if absent")
    ] = Path("var/demo"),
    rows: Annotated[int, typer.Option(min=1, help="card payments, if generating")] = 1_000_000,
    meters: Annotated[int, typer.Option(min=1, help="smart meters, if generating")] = 20_000,
    credentials: Annotated[
        Path, typer.Option(help="file keeping the partners' secrets (0600)")
    ] = Path("var/demo-credentials.json"),
) -> None:
    """Register the demo datasets, partners and agreements (once) and print the partners'
    credentials; generates the demo data first if it is absent."""
    from service.demo.load import LoadedShare, load, read_saved, write_saved

    wanted: dict[str, Generator] = {
        "payments": PaymentsGenerator(rows, 2025),
        "consumption": ConsumptionGenerator(meters, 365, 2025, ["74"]),
    }
    current = settings()
    opened = sessions(current)
    saved = read_saved(credentials)
    for name, generator in wanted.items():
        if not (data_dir / f"{name}.parquet").is_file():
            check_directory(data_dir, "--data-dir")
            stderr.print(f"generating the demo {name} data in {data_dir}…")
            with terminated_as_interrupted():
                generate(generator, data_dir, name, False, lambda _rows: None)
    store = EncryptedStore(current.data_dir, StorageKeys(current.keys_dir))
    with opened() as session:
        loaded = load(session, store, data_dir, saved)
        session.flush()
        # Saved before the commit: no partner is created whose secret is lost.
        write_saved(credentials, loaded)
        session.commit()
    partners: dict[str, list[LoadedShare]] = {}
    for share in loaded:
        partners.setdefault(share.partner, []).append(share)
    for name, shares in partners.items():
        agreements = "".join(
            f"\n  agreement:     {share.agreement_id} ({share.kind})" for share in shares
        )
        stderr.print(
            f"[bold]{name}[/]\n  client_id:     {shares[0].client_id}\n"
            f"  client_secret: {shares[0].client_secret}{agreements}",
            highlight=False,
        )

"""``partage demo generate``: realistic synthetic French data to try Partage on."""

from __future__ import annotations

import enum
from functools import partial
from pathlib import Path
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
from anonymization.errors import PartageError
from service.config import get_settings
from service.console import fail
from service.db import make_engine, make_sessionmaker
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
def generate_command(
    out: Annotated[Path, typer.Option("--out", help="directory to write the files into")],
    dataset: Annotated[Dataset, typer.Option(help="which dataset to generate")] = Dataset.all,
    rows: Annotated[int, typer.Option(min=1, help="card payments to generate")] = 1_000_000,
    meters: Annotated[int, typer.Option(min=1, help="smart meters")] = 2_000,
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
    generators: dict[str, Generator] = {}
    if dataset in (Dataset.payments, Dataset.all):
        generators["payments"] = PaymentsGenerator(rows, seed)
    if dataset in (Dataset.consumption, Dataset.all):
        territory = _territory(departements)
        generators["consumption"] = ConsumptionGenerator(meters, days, seed, territory)
    with Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet,
    ) as progress:
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
    for name, generator in wanted.items():
        if not (data_dir / f"{name}.parquet").is_file():
            data_dir.mkdir(parents=True, exist_ok=True)
            stderr.print(f"generating the demo {name} data in {data_dir}…")
            generate(generator, data_dir, name, False, lambda _rows: None)
    settings = get_settings()
    store = EncryptedStore(settings.data_dir, StorageKeys(settings.keys_dir))
    saved = read_saved(credentials)
    with make_sessionmaker(make_engine(settings.database_url))() as session:
        try:
            loaded = load(session, store, data_dir, saved)
        except PartageError as error:
            raise fail(error) from None
        session.commit()
    write_saved(credentials, loaded)
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

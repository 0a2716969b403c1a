from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from service.cli import app
from service.demo.generate import generate as write_dataset
from service.demo.payments import PaymentsGenerator
from service.demo.reference import communes
from tests.factories import EXAMPLES

runner = CliRunner()
DEMO = EXAMPLES / "demo"


def generate(out: Path, *extra: str) -> str:
    result = runner.invoke(app, ["demo", "generate", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out, "--rows", "20000", "--meters", "100", "--days", "200", "--quiet")
    return out


def test_same_seed_and_sizes_give_identical_files(tmp_path: Path) -> None:
    sizes = ["--rows", "3000", "--meters", "12", "--days", "40", "--quiet"]
    generate(tmp_path / "a", *sizes)
    generate(tmp_path / "b", *sizes)
    generate(tmp_path / "c", *sizes, "--seed", "7")
    first = digests(tmp_path / "a")
    assert set(first) == {
        "payments.parquet",
        "payments.csv",
        "consumption.parquet",
        "consumption.csv",
    }
    assert first == digests(tmp_path / "b")
    assert all(first[name] != digest for name, digest in digests(tmp_path / "c").items())


def test_payments_hold_real_codes_and_long_tailed_amounts(data: Path) -> None:
    table = pq.read_table(data / "payments.parquet").to_pandas()
    assert len(table) == 20_000
    reference = communes()
    of_commune = dict(zip(reference.code, reference.departement, strict=True))
    assert (table["commune"].map(of_commune) == table["departement"]).all()
    assert table.groupby("card_id")["holder_name"].nunique().max() == 1
    assert table.groupby("card_id")["departement"].nunique().max() <= 3
    assert table["card_id"].nunique() < len(table) / 4
    assert (table["paid_at"].dt.year == 2025).all()
    summer = table["paid_at"].dt.month.isin([7, 8]).mean()
    assert summer > 2 / 12
    amount = table["amount"]
    assert amount.min() > 0 and amount.max() > 50 * amount.median()
    csv = pd.read_csv(data / "payments.csv", dtype=str)
    assert list(csv["departement"]) == list(table["departement"])


def test_consumption_has_derived_iris_and_heating_seasonality(data: Path) -> None:
    table = pq.read_table(data / "consumption.parquet").to_pandas()
    assert len(table) == 100 * 200 and table["meter_id"].nunique() == 100
    assert (table["iris"].str.len() == 9).all()
    assert (table["iris"].str[:5] == table["commune"]).all()
    assert table["commune"].str.startswith("74").all()
    assert set(table["tariff"]) <= {"base", "hp_hc", "tempo"}
    month = pd.to_datetime(table["date"]).dt.month
    assert table.loc[month == 1, "kwh"].mean() > 1.2 * table.loc[month == 6, "kwh"].mean()


def release(data: Path, name: str, out: Path, request: str = "") -> pd.DataFrame:
    result = runner.invoke(
        app,
        [
            "release",
            str(data / f"{name}.csv"),
            "--policy",
            str(DEMO / f"{name}-policy.yaml"),
            "--request",
            str(DEMO / (request or f"{name}-request.yaml")),
            "--out",
            str(out),
            "--format",
            "csv",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype=str)


@pytest.mark.parametrize("name", ["payments", "consumption"])
def test_demo_policies_release_some_cells_and_suppress_others(
    data: Path, tmp_path: Path, name: str
) -> None:
    table = release(data, name, tmp_path / "out.csv")
    status = table["status"].value_counts()
    assert status["released"] > 0 and status["suppressed"] > 0
    policy = yaml.safe_load((DEMO / f"{name}-policy.yaml").read_text())["dataset"]
    columns = set(pq.read_schema(data / f"{name}.parquet").names)
    declared = {policy["subject"], *policy.get("identifiers", []), *policy["columns"]}
    assert declared == columns
    assert not {policy["subject"], *policy.get("identifiers", [])} & set(table.columns)


def test_payment_codes_stay_text(data: Path, tmp_path: Path) -> None:
    table = release(data, "payments", tmp_path / "out.csv")
    assert {"2A", "06", "971"} <= set(table["departement"])
    assert (table.loc[table["status"] == "released", "subjects"].astype(float) >= 10).all()


def test_iris_request_is_allowed_and_suppresses_sparse_cells(data: Path, tmp_path: Path) -> None:
    table = release(data, "consumption", tmp_path / "out.csv", "consumption-iris-request.yaml")
    assert (table["iris"].str.len() == 9).all()
    assert set(table["date"]) == {"2025-01", "2025-02", "2025-03"}
    assert (table["status"] == "suppressed").any()


def test_csv_is_optional_and_bad_territory_is_refused(tmp_path: Path) -> None:
    output = generate(tmp_path, "--dataset", "consumption", "--meters", "5", "--no-csv")
    assert {p.name for p in tmp_path.iterdir()} == {"consumption.parquet"}
    assert "consumption" in output and "1,825 rows" in output
    result = runner.invoke(
        app, ["demo", "generate", "--out", str(tmp_path / "x"), "--departements", "74,99"]
    )
    assert result.exit_code == 2 and "99" in result.output
    assert not (tmp_path / "x").exists()


def test_a_failed_run_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = PaymentsGenerator(250_000, 1)
    chunks = generator.chunks

    def failing() -> Iterator[pa.Table]:
        iterator = chunks()
        yield next(iterator)
        raise OSError("disk full")

    monkeypatch.setattr(generator, "chunks", failing)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(generator, tmp_path, "payments", True, lambda _rows: None)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").touch()
    result = runner.invoke(app, ["demo", "generate", "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "not a directory" in result.output


def test_sigterm_leaves_no_partial_file(tmp_path: Path) -> None:
    """Terminated mid-run (as a service manager stops it), the run removes its temporary files
    as Ctrl-C does and exits 143."""
    out = tmp_path / "demo"
    script = (
        "import sys; from service import entry; sys.argv = ['partage', *sys.argv[1:]]; entry.main()"
    )
    arguments = ["demo", "generate", "--out", str(out), "--rows", "50000000", "--quiet"]
    process = subprocess.Popen([sys.executable, "-c", script, *arguments])
    deadline = time.monotonic() + 60
    while not list(out.glob(".payments.parquet.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.glob(".*.partial")), "the run started writing"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rows", str(10**15)], "--rows"),
        (["--dataset", "consumption", "--meters", str(10**15)], "--meters"),
        (["--dataset", "consumption", "--meters", "1000000", "--days", "3000"], "readings"),
        (["--out", "/proc/partage-demo"], "cannot write in /proc"),
    ],
)
def test_sizes_and_places_out_of_bounds_exit_2(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["demo", "generate", "--out", str(tmp_path / "x"), *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []

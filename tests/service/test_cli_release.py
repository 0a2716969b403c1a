from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.factories import EXAMPLES, payments

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    payments().to_csv(tmp_path / "payments.csv", index=False)
    return tmp_path


def release(
    workdir: Path, *extra: str, request: str = "payments-request.yaml", out: str = "out.csv"
) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "release",
            str(workdir / "payments.csv"),
            "--policy",
            str(workdir / "payments-policy.yaml"),
            "--request",
            str(workdir / request),
            "--out",
            str(workdir / out),
            "--quiet",
            *extra,
        ],
    )
    return result.exit_code, result.output


def test_release_writes_the_table_and_its_manifest(workdir: Path) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    table = pd.read_csv(workdir / "out.csv", dtype={"departement": str})
    assert list(table.columns) == [
        "departement",
        "date",
        "amount_sum",
        "amount_mean",
        "subjects",
        "status",
        "reason",
    ]
    assert {"2A", "06", "971", "*"} <= set(table["departement"])
    suppressed = table[table["status"] == "suppressed"]
    assert (
        len(suppressed) > 0
        and suppressed[["amount_sum", "amount_mean", "subjects"]].isna().all().all()
    )
    assert (table.loc[table["status"] == "released", "subjects"] >= 10).all()
    counts = [row.split(",")[4] for row in (workdir / "out.csv").read_text().splitlines()[1:]]
    assert all(value == "" or value.isdigit() for value in counts), "counts are integers"
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["suppressed"] == len(suppressed)
    assert (
        manifest["output"]["sha256"]
        == __import__("hashlib").sha256((workdir / "out.csv").read_bytes()).hexdigest()
    )
    assert manifest["input"]["digest"].startswith("sha256:") and manifest[
        "policy_digest"
    ].startswith("sha256:")
    assert manifest["request"]["filters"]["card_country"] == {"in": ["DE", "GB"]}
    audit = manifest["audit"]
    assert audit["passed"] and len(audit["cells"]) == len(suppressed)
    assert manifest["complements"] == (suppressed["reason"] == "secondary").sum()
    for entry in audit["cells"]:
        assert set(entry) == {"key", "reason", "subjects", "amount_sum"}
        low, high = entry["subjects"]["lower"], entry["subjects"]["upper"]
        if entry["reason"] != "secondary":
            assert high is None or high - low >= 10


def test_a_dimension_grouped_at_top_has_no_margin_of_its_own(workdir: Path) -> None:
    """With totals, a dimension grouped at ``*`` is ``*`` in every cell: its margin would be
    each cell again (every row was published twice)."""
    (workdir / "top.yaml").write_text(
        "group_by: {departement: '*', date: month}\nmeasures: [amount.sum, subjects]\n"
        "filters: {date: {from: 2025-06-01, to: 2025-08-31}}\ntotals: true\n"
    )
    code, output = release(
        workdir, "--manifest", str(workdir / "manifest.json"), request="top.yaml"
    )
    assert code == 0, output
    table = pd.read_csv(workdir / "out.csv", dtype=str, keep_default_na=False)
    assert not table.duplicated(["departement", "date"]).any()
    assert set(table["departement"]) == {"*"}
    assert sorted(table["date"]) == ["*", "2025-06", "2025-07", "2025-08"]


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_other_formats_keep_codes_as_text(workdir: Path, fmt: str) -> None:
    code, output = release(workdir, "--format", fmt)
    assert code == 0, output
    out = workdir / "out.csv"
    table = (
        pd.read_parquet(out) if fmt == "parquet" else pd.read_json(out, dtype={"departement": str})
    )
    assert "06" in set(table["departement"])
    if fmt == "parquet":
        assert pd.api.types.is_integer_dtype(table["subjects"].dtype)
    else:
        assert re.search(r'"subjects":\d+[,}]', out.read_text())
        assert not re.search(r'"subjects":\d+\.', out.read_text())


@pytest.mark.parametrize(
    ("request_text", "message"),
    [
        ("group_by: {date: day}\n", "group_by.date"),
        ("group_by: {holder_name: value}\n", "holder_name"),
        ("group_by: {departement: departement}\nmeasures: [amount.median]\n", "measures[0]"),
        (
            "group_by: {departement: departement}\nfilters: {holder_name: {in: [x]}}\n",
            "filters.holder_name",
        ),
        ("group_by: [oops\n", "not valid YAML"),
        ("filters: {date: {from: garbage}}\n", "filters.date.from"),
        ("filters: {date: {from: 2025-07-01, to: '2025-13-45'}}\n", "filters.date.to"),
        ("filters: {date: {from: 2025-06-01, to: 2025-06-15}}\n", "filters.date.to"),
        ("filters: {date: {from: 2025-08-01, to: 2025-06-30}}\n", "filters.date.from"),
    ],
)
def test_bad_requests_exit_2_and_write_nothing(
    workdir: Path, request_text: str, message: str
) -> None:
    (workdir / "bad.yaml").write_text(request_text)
    code, output = release(workdir, request="bad.yaml")
    assert code == 2
    assert message in output.replace("\n", "")
    assert not (workdir / "out.csv").exists()


def test_malformed_data_and_uncovered_values_exit_2(workdir: Path) -> None:
    data = payments()
    data.loc[data.index[:400], "departement"] = "99"
    data.to_csv(workdir / "payments.csv", index=False)
    code, output = release(workdir)
    assert code == 2 and "'99'" in output and not (workdir / "out.csv").exists()
    (workdir / "payments.csv").write_text("card_id,holder_name\nC1,x\n")
    code, output = release(workdir)
    assert code == 2 and "not in the data" in output


@pytest.mark.parametrize("totals", [True, False])
def test_a_label_that_marks_margins_exits_2(workdir: Path, totals: bool) -> None:
    # A value `*` in the data would be read as a margin (every value): with totals two
    # different cells shared one key, and the audit from the files read a cell as a total.
    data = payments()
    data.loc[data.index[:300], "card_country"] = "*"
    data.to_csv(workdir / "payments.csv", index=False)
    request = {"group_by": {"card_country": "value"}, "measures": ["subjects"], "totals": totals}
    (workdir / "star.yaml").write_text(json.dumps(request))
    code, output = release(workdir, request="star.yaml")
    assert code == 2, output
    assert "[card_country]" in output and "marks a margin" in output.replace("\n", "")
    assert not (workdir / "out.csv").exists()


def test_a_held_release_the_policy_no_longer_allows_names_the_ledger(workdir: Path) -> None:
    # The partner holds it whatever the policy now says: the release stops, naming the
    # ledger (it used to name `group_by.departement`, a field not in the user's request).
    ledger = str(workdir / "ledger.db")
    assert release(workdir, "--ledger", ledger)[0] == 0
    policy = (workdir / "payments-policy.yaml").read_text()
    (workdir / "payments-policy.yaml").write_text(
        policy.replace("dimensions: {departement: departement, ", "dimensions: {")
    )
    (workdir / "by-date.yaml").write_text("group_by: {date: month}\n")
    code, output = release(workdir, "--ledger", ledger, request="by-date.yaml")
    assert code == 2, output
    assert "[ledger]" in output and "release 1 that" in output.replace("\n", " ")


@pytest.mark.parametrize("values", [["inf"], ["nan"], ["1e308"] * 3, ["-inf", "inf"]])
def test_amounts_that_are_not_finite_exit_2(workdir: Path, values: list[str]) -> None:
    # An infinite or NaN total was released as `inf` (or empty) with status released, though
    # no dominance share can be judged on it; 1e308 three times overflows to inf.
    data = payments().astype({"amount": object})
    dates = pd.to_datetime(data["date"])
    wanted = data["card_country"].isin(["DE", "GB"]) & (dates.dt.month == 7)
    data.loc[data.index[wanted][: len(values)], "amount"] = values
    data.to_csv(workdir / "payments.csv", index=False)
    code, output = release(workdir, "--manifest", str(workdir / "m.json"))
    assert code == 2, output
    assert "[amount]" in output and "not finite" in " ".join(output.split())
    assert not (workdir / "out.csv").exists() and not (workdir / "m.json").exists()


@pytest.mark.parametrize(
    ("filters", "value"),
    [
        ("departement: {in: ['99']}", "'99'"),
        ("departement: {in: ['74', 'ZZZ'], level: region}", "'ZZZ'"),
    ],
)
def test_a_filter_value_the_hierarchy_lacks_exits_2(
    workdir: Path, filters: str, value: str
) -> None:
    # It matched nothing and released an empty table (exit 0).
    (workdir / "f.yaml").write_text(f"group_by: {{date: month}}\nfilters: {{{filters}}}\n")
    code, output = release(workdir, request="f.yaml")
    assert code == 2, output
    assert "[filters.departement.in]" in output and value in output
    assert not (workdir / "out.csv").exists()


@pytest.mark.parametrize("damage", ["extra field", "truncated"])
def test_a_csv_line_of_another_shape_is_named(workdir: Path, damage: str) -> None:
    # DuckDB's sniffer read such a file as one column, so the error said "column 'amount' is
    # not in the data" although the header has it.
    lines = (workdir / "payments.csv").read_text().splitlines()
    if damage == "extra field":
        lines[5] += ",EXTRA"
    else:
        lines[-1] = lines[-1].rsplit(",", 1)[0]
    (workdir / "payments.csv").write_text("\n".join(lines) + "\n")
    code, output = release(workdir)
    assert code == 2, output
    line = 6 if damage == "extra field" else len(lines)
    assert f"[data]: payments.csv: line {line} has" in " ".join(output.split()), output


def test_the_console_script_runs_offline_commands_without_the_service(workdir: Path) -> None:
    """``partage release`` through the console script: exit 0, the table written, and neither
    the web framework nor the ORM imported (read from the interpreter's import log)."""
    script = (
        "import sys; from service import entry; sys.argv = ['partage', *sys.argv[1:]]; entry.main()"
    )
    args = ["release", str(workdir / "payments.csv"), "--out", str(workdir / "out.csv")]
    args += ["--policy", str(workdir / "payments-policy.yaml"), "--quiet"]
    args += ["--request", str(workdir / "payments-request.yaml")]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (workdir / "out.csv").exists()
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "pandas" in imported and "duckdb" in imported
    assert not {"fastapi", "sqlalchemy", "starlette"} & imported


def test_band_widths_that_cannot_label_values_exit_2_naming_the_hierarchy(
    workdir: Path,
) -> None:
    policy = (workdir / "payments-policy.yaml").read_text()
    policy = policy.replace(
        "age_bands: hierarchies/adult_hierarchy_age.csv", "age_bands: {bands: [1, .inf]}"
    )
    (workdir / "payments-policy.yaml").write_text(policy.replace("age: level2", "age: band1"))
    code, output = release(workdir)
    assert code == 2, output
    assert "hierarchies.age_bands.bands" in output.replace("\n", "")


@pytest.mark.parametrize("amount", ["1e308", "inf"])
def test_sums_that_are_not_numbers_exit_2_naming_the_measure(workdir: Path, amount: str) -> None:
    data = payments()
    data["amount"] = data["amount"].astype(str)
    data.loc[data.index[:50], "amount"] = amount
    data.to_csv(workdir / "payments.csv", index=False)
    code, output = release(workdir)
    assert code == 2, output
    assert "[amount]" in output and "not finite" in output
    assert not (workdir / "out.csv").exists()


def test_an_unknown_stored_level_exits_2_naming_the_column_level(workdir: Path) -> None:
    policy = (workdir / "payments-policy.yaml").read_text()
    policy = policy.replace("level: departement}", "level: planet}", 1)
    (workdir / "payments-policy.yaml").write_text(policy)
    code, output = release(workdir)
    assert code == 2, output
    assert "[dataset.columns.departement.level]" in output.replace("\n", "")

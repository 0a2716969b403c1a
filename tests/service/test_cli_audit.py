from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from anonymization.cells import compute_cells
from policies.files import parse, read_document
from policies.models import ExtractRequest, Policy, load_hierarchies
from policies.requests import build_plan
from service.cli import app
from tests.service.test_cli_release import release, workdir

runner = CliRunner()
__all__ = ["workdir"]


def audit(workdir: Path, table: str = "out.csv") -> tuple[int, str]:
    result = runner.invoke(
        app, ["audit", str(workdir / table), "--manifest", str(workdir / "manifest.json")]
    )
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_the_audit_passes_on_the_files_of_a_release(workdir: Path, fmt: str) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"), "--format", fmt)
    assert code == 0, output
    code, output = audit(workdir)
    assert code == 0, output
    assert "audit passed" in output


def forge(workdir: Path, table: pd.DataFrame, manifest: dict[str, object]) -> None:
    data = table.to_csv(index=False).encode()
    (workdir / "forged.csv").write_bytes(data)
    manifest["output"] = {"format": "csv", "sha256": hashlib.sha256(data).hexdigest()}
    (workdir / "manifest.json").write_text(json.dumps(manifest))


def true_cells(workdir: Path) -> pd.DataFrame:
    policy = parse(Policy, read_document(workdir / "payments-policy.yaml"))
    hierarchies = load_hierarchies(policy, workdir)
    request = parse(ExtractRequest, read_document(workdir / "payments-request.yaml"))
    plan = build_plan(policy, hierarchies, request)
    return compute_cells(workdir / "payments.csv", plan).set_index(["departement", "date"])


def test_a_release_whose_complements_are_published_fails_naming_the_cell(workdir: Path) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    table = pd.read_csv(workdir / "out.csv", dtype={"departement": str}, keep_default_na=False)
    truth = true_cells(workdir)
    secondary = table.index[table["reason"] == "secondary"]
    assert len(secondary) > 0
    for row in secondary:
        cell = truth.loc[(table.at[row, "departement"], table.at[row, "date"])]
        table.loc[row, ["status", "reason"]] = ["released", ""]
        table.loc[row, "subjects"] = str(cell["subjects"])
        table.loc[row, "amount_sum"] = str(round(cell["amount_sum"], 6))
    forge(workdir, table, json.loads((workdir / "manifest.json").read_text()))
    code, output = audit(workdir, "forged.csv")
    assert code != 0
    assert "departement=" in output and "date=" in output, output


def test_a_tampered_table_or_manifest_fails(workdir: Path) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    (workdir / "out.csv").write_text((workdir / "out.csv").read_text().replace(",1", ",2", 1))
    code, output = audit(workdir)
    assert code != 0 and "SHA-256" in output
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    manifest = json.loads((workdir / "manifest.json").read_text())
    entry = manifest["audit"]["cells"][0]
    entry["subjects"] = {"lower": 0, "upper": 1000000}
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    code, output = audit(workdir)
    assert code != 0 and "the manifest states subjects" in output


def damage(workdir: Path, path: list[str], value: object) -> None:
    """Set the manifest's field at ``path`` to ``value`` (the table left as released)."""
    manifest = json.loads((workdir / "manifest.json").read_text())
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    assert path[-1] in parent  # the engine writes every field damaged here
    parent[path[-1]] = value
    (workdir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("path", "value", "said"),
    [
        (["cells"], 3, "the manifest says cells: 3, the table has"),
        (["released"], 0, "the manifest says released: 0"),
        (["suppressed"], 1, "the manifest says suppressed: 1"),
        (["suppressed_by_reason"], {"k": 1}, "the manifest says suppressed_by_reason"),
        (["complements"], 1000, "the manifest says complements: 1000"),
        (["audit", "requirement", "subjects_width"], 2, "states the requirement subjects_width 2"),
        (["audit", "requirement", "sum_percent"], 1.5, "sum_percent 1.5; its plan's protection"),
        (["audit", "passed"], False, "the manifest's audit says it did not pass"),
    ],
)
def test_a_manifest_that_misdescribes_its_table_fails(
    workdir: Path, path: list[str], value: object, said: str
) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    assert audit(workdir)[0] == 0
    damage(workdir, path, value)
    code, output = audit(workdir)
    assert code == 2 and said in output and "[manifest." in output, output


@pytest.mark.parametrize(
    ("path", "value"),
    [(["cells"], "many"), (["complements"], -1), (["audit", "passed"], "yes")],
)
def test_a_figure_of_the_wrong_type_is_named(workdir: Path, path: list[str], value: object) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    damage(workdir, path, value)
    code, output = audit(workdir)
    assert code == 2 and f"[manifest.{'.'.join(path)}]" in output, output


@pytest.mark.parametrize(
    "field", ["cells", "released", "suppressed", "suppressed_by_reason", "complements", "input"]
)
def test_a_manifest_missing_what_the_engine_writes_is_named(workdir: Path, field: str) -> None:
    # Without its figures nothing checks what the manifest tells a reader of the table, and
    # without its data's digest a held release of other data could not be told apart.
    code, output = release(workdir, "--manifest", str(workdir / "manifest.json"))
    assert code == 0, output
    manifest = json.loads((workdir / "manifest.json").read_text())
    del manifest[field]
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    code, output = audit(workdir)
    assert code == 2 and f"[manifest.{field}]" in output, output


@given(st.one_of(st.integers(-20, 9), st.floats(0.1, 50).filter(lambda x: x != round(x))))
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_released_count_below_k_or_not_whole_fails(workdir: Path, subjects: float) -> None:
    # A table edited by hand (its hash updated: an offline manifest is not signed) that
    # releases a cell below k, or a count no table of subjects can hold, fails naming it.
    if not (workdir / "manifest.json").exists():
        assert release(workdir, "--manifest", str(workdir / "manifest.json"))[0] == 0
    table = pd.read_csv(workdir / "out.csv", dtype={"departement": str}, keep_default_na=False)
    row = table.index[table["status"] == "released"][0]
    table.loc[row, "subjects"] = str(subjects)  # as written: 9.999999999999993 is not 10
    forge(workdir, table, json.loads((workdir / "manifest.json").read_text()))
    code, output = audit(workdir, "forged.csv")
    assert code == 2, output
    assert "[subjects]" in output and f"has {subjects} subjects" in output, output


def test_the_ledger_protects_later_releases_to_the_same_partner(workdir: Path) -> None:
    ledger = str(workdir / "ledger.db")
    (workdir / "all.yaml").write_text("group_by: {departement: departement}\n")
    (workdir / "some.yaml").write_text(
        "group_by: {departement: departement}\ntotals: true\n"
        "filters: {card_country: {in: [DE, GB, US]}}\n"
    )
    code, output = release(workdir, "--ledger", ledger, request="all.yaml")
    assert code == 0, output
    first = pd.read_csv(workdir / "out.csv", dtype={"departement": str})
    code, output = release(
        workdir,
        "--ledger",
        ledger,
        "--manifest",
        str(workdir / "manifest.json"),
        request="some.yaml",
    )
    assert code == 0, output
    second = pd.read_csv(workdir / "out.csv", dtype={"departement": str}).set_index("departement")
    for _, row in first.iterrows():
        if row["status"] == "suppressed":
            assert second.loc[row["departement"], "status"] == "suppressed"
    assert audit(workdir)[0] == 0
    code, output = release(workdir, "--ledger", ledger, "--partner", "other", request="some.yaml")
    assert code == 0, output
    alone = pd.read_csv(workdir / "out.csv", dtype={"departement": str}).set_index("departement")
    assert (alone["status"] == "suppressed").sum() <= (second["status"] == "suppressed").sum()


def test_a_release_held_with_another_by_other_dimensions(workdir: Path) -> None:
    """By département, then by card country, without totals: both add up to the same June
    total, so a suppressed département's amount would be the countries' sum minus the other
    départements. The second release is protected with the first (a country hides the total)
    and the audit from its files alone checks that its intervals contain the manifest's."""
    ledger = str(workdir / "ledger.db")
    june = "measures: [amount.sum, subjects]\nfilters: {date: {from: 2025-06-01, to: 2025-06-30}}\n"
    (workdir / "first.yaml").write_text("group_by: {departement: departement}\n" + june)
    (workdir / "second.yaml").write_text("group_by: {card_country: value}\n" + june)
    code, output = release(workdir, "--ledger", ledger, request="first.yaml")
    assert code == 0, output
    assert "suppressed" in set(pd.read_csv(workdir / "out.csv")["status"])
    manifest = str(workdir / "manifest.json")
    code, output = release(
        workdir, "--ledger", ledger, "--manifest", manifest, request="second.yaml"
    )
    assert code == 0, output
    countries = pd.read_csv(workdir / "out.csv")
    assert (countries["reason"] == "secondary").any(), "the countries' sum gives the total away"
    code, output = audit(workdir)
    assert code == 0 and "protected jointly with 1 held release(s)" in output, output
    stated = json.loads((workdir / "manifest.json").read_text())
    assert stated["audit"]["held_releases"] == 1
    stated["audit"]["cells"][0]["amount_sum"] = {"lower": -1.0, "upper": None}
    (workdir / "manifest.json").write_text(json.dumps(stated))
    code, output = audit(workdir)
    assert code == 2 and "wider than" in output, output


def test_a_later_release_may_add_a_sum_the_held_one_lacks(workdir: Path) -> None:
    """The partner holds subjects by département; the next release adds the amount: the held
    cells' amounts, never published, are left free in its LP (they crashed the joint system),
    and the release goes out audited."""
    ledger = str(workdir / "ledger.db")
    june = "filters: {date: {from: 2025-06-01, to: 2025-06-30}}\n"
    (workdir / "counts.yaml").write_text(
        "group_by: {departement: departement}\nmeasures: [subjects]\n" + june
    )
    (workdir / "sums.yaml").write_text(
        "group_by: {card_country: value}\nmeasures: [amount.sum, subjects]\n" + june
    )
    code, output = release(workdir, "--ledger", ledger, request="counts.yaml")
    assert code == 0, output
    manifest = str(workdir / "manifest.json")
    code, output = release(workdir, "--ledger", ledger, "--manifest", manifest, request="sums.yaml")
    assert code == 0, output
    assert "amount_sum" in pd.read_csv(workdir / "out.csv").columns
    code, output = audit(workdir)
    assert code == 0, output


JUNE = "measures: [amount.sum, subjects]\nfilters: {date: {from: 2025-06-01, to: 2025-06-30}}\n"


def held_audit(workdir: Path, table: str, manifest: str, *held: str) -> tuple[int, str]:
    """``partage audit`` of ``table`` with each held release given as its base name (the
    table ``<name>.csv`` and its manifest ``<name>.json``)."""
    args = ["audit", str(workdir / table), "--manifest", str(workdir / manifest)]
    for name in held:
        args += ["--held", str(workdir / f"{name}.csv")]
        args += ["--held-manifest", str(workdir / f"{name}.json")]
    result = runner.invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


def named_release(workdir: Path, name: str, request: str, *extra: str) -> None:
    """Release ``request`` (YAML text) as ``<name>.csv`` with its manifest ``<name>.json``."""
    (workdir / f"{name}.yaml").write_text(request)
    code, output = release(
        workdir,
        "--manifest",
        str(workdir / f"{name}.json"),
        *extra,
        request=f"{name}.yaml",
        out=f"{name}.csv",
    )
    assert code == 0, output


def test_with_the_held_files_the_audit_finds_the_manifests_joint_intervals(
    workdir: Path,
) -> None:
    """By département, then by card country through the ledger: with the first release's files
    the audit sets up the partner's joint LP (both add up to the June total, which neither
    publishes) and finds the manifest's intervals exactly; a wider one stated fails."""
    ledger = str(workdir / "ledger.db")
    named_release(
        workdir, "first", "group_by: {departement: departement}\n" + JUNE, "--ledger", ledger
    )
    named_release(workdir, "second", "group_by: {card_country: value}\n" + JUNE, "--ledger", ledger)
    code, output = held_audit(workdir, "second.csv", "second.json", "first")
    assert code == 0 and "jointly with 1 held release(s): the intervals equal" in output, output
    stated = json.loads((workdir / "second.json").read_text())
    secondary = [c for c in stated["audit"]["cells"] if c["reason"] == "secondary"]
    # The countries' sum is at least the départements' published ones: a bound from both files.
    assert secondary and all(c["amount_sum"]["lower"] > 0 for c in secondary)
    secondary[0]["amount_sum"]["lower"] /= 2
    (workdir / "second.json").write_text(json.dumps(stated))
    code, output = held_audit(workdir, "second.csv", "second.json", "first")
    assert code == 2 and "the manifest states amount_sum in" in output, output


def test_a_release_made_without_the_ledger_fails_the_audit_with_the_held_files(
    workdir: Path,
) -> None:
    """The attack the ledger prevents, found from the files alone: the countries' June amounts
    add up to the total, so the département suppressed in the first release is that total minus
    the others. Alone, the second release passes its audit; with the first one held, the audit
    names the recovered cell."""
    named_release(workdir, "first", "group_by: {departement: departement}\n" + JUNE)
    named_release(workdir, "second", "group_by: {card_country: value}\n" + JUNE)
    first = pd.read_csv(workdir / "first.csv", dtype={"departement": str})
    hidden = first.loc[first["reason"] == "k", "departement"].tolist()
    assert hidden
    code, output = held_audit(workdir, "second.csv", "second.json")
    assert code == 0, output
    code, output = held_audit(workdir, "second.csv", "second.json", "first")
    assert code == 2, output
    assert f"held release 1's suppressed cell (departement={hidden[0]}) can be narrowed" in output


def test_a_cell_a_held_release_suppressed_must_stay_suppressed(workdir: Path) -> None:
    """A forged second release of the same table that shows a cell the first suppressed."""
    named_release(workdir, "first", "group_by: {departement: departement}\n" + JUNE)
    table = pd.read_csv(workdir / "first.csv", dtype={"departement": str}, keep_default_na=False)
    manifest = json.loads((workdir / "first.json").read_text())
    cell = int(np.flatnonzero(table["reason"] == "k")[0])
    label = table.loc[cell, "departement"]
    table.loc[cell, ["amount_sum", "subjects", "status", "reason"]] = ["1.0", "12", "released", ""]
    manifest["audit"]["cells"] = [
        c for c in manifest["audit"]["cells"] if c["key"]["departement"] != label
    ]
    forge(workdir, table, manifest)
    code, output = held_audit(workdir, "forged.csv", "manifest.json", "first")
    assert code == 2, output
    assert f"cell (departement={label}) is released, but held release 1 suppressed it" in output


def test_releases_at_two_levels_of_a_hierarchy_are_tied_through_the_policy(
    workdir: Path,
) -> None:
    """By région, then by département: a région is the sum of its départements. The audit needs
    the policy's hierarchy to tie them, and says so without it."""
    ledger = str(workdir / "ledger.db")
    named_release(
        workdir, "regions", "group_by: {departement: region}\n" + JUNE, "--ledger", ledger
    )
    named_release(
        workdir, "departements", "group_by: {departement: departement}\n" + JUNE, "--ledger", ledger
    )
    code, output = held_audit(workdir, "departements.csv", "departements.json", "regions")
    assert code != 0 and "[policy]" in output and "'departement' at levels" in output, output
    result = runner.invoke(
        app,
        [
            "audit",
            str(workdir / "departements.csv"),
            "--manifest",
            str(workdir / "departements.json"),
            "--held",
            str(workdir / "regions.csv"),
            "--held-manifest",
            str(workdir / "regions.json"),
            "--policy",
            str(workdir / "payments-policy.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "the intervals equal the manifest's" in " ".join(result.output.split())


def test_held_files_of_other_filters_stay_out_and_other_data_is_refused(workdir: Path) -> None:
    named_release(workdir, "june", "group_by: {departement: departement}\n" + JUNE)
    may = JUNE.replace("2025-06-01", "2025-05-01").replace("2025-06-30", "2025-05-31")
    named_release(workdir, "may", "group_by: {departement: departement}\n" + may)
    code, output = held_audit(workdir, "june.csv", "june.json", "may")
    assert code == 0 and "1 held release(s) of other filters: not in the LP" in output, output
    stated = json.loads((workdir / "may.json").read_text())
    stated["input"]["digest"] = "sha256:" + "0" * 64
    (workdir / "may.json").write_text(json.dumps(stated))
    code, output = held_audit(workdir, "june.csv", "june.json", "may")
    assert code != 0 and "[held.0.input.digest]" in output and "other data" in output, output


def test_a_held_manifest_that_misdescribes_its_table_fails(workdir: Path) -> None:
    named_release(workdir, "june", "group_by: {departement: departement}\n" + JUNE)
    may = JUNE.replace("2025-06-01", "2025-05-01").replace("2025-06-30", "2025-05-31")
    named_release(workdir, "may", "group_by: {departement: departement}\n" + may)
    stated = json.loads((workdir / "may.json").read_text())
    stated["released"] += 1
    (workdir / "may.json").write_text(json.dumps(stated))
    code, output = held_audit(workdir, "june.csv", "june.json", "may")
    assert code == 2 and "[held.0.manifest.released]" in output, output
    assert "held release 1: the manifest says released" in output, output


def test_each_held_table_needs_its_manifest(workdir: Path) -> None:
    named_release(workdir, "june", "group_by: {departement: departement}\n" + JUNE)
    args = ["audit", str(workdir / "june.csv"), "--manifest", str(workdir / "june.json")]
    result = runner.invoke(app, [*args, "--held", str(workdir / "june.csv")])
    output = " ".join(result.output.split())
    assert result.exit_code != 0 and "[--held-manifest]" in output, output
    (workdir / "bad.json").write_text("{}")
    result = runner.invoke(
        app,
        [*args, "--held", str(workdir / "june.csv"), "--held-manifest", str(workdir / "bad.json")],
    )
    output = " ".join(result.output.split())
    assert result.exit_code != 0 and "held release 1 (june.csv, bad.json)" in output, output

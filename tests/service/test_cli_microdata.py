"""``partage anonymize``: a release on success; exit 2, one message and no file on bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()
KEY = "k" * 40


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    pd.DataFrame(
        {
            "meter": [f"PDL{i:014d}" for i in range(40)],
            "name": [f"client {i}" for i in range(40)],
            "age": [str(20 + i % 40) for i in range(40)],
            "zone": ["north", "south", "east", "west"] * 10,
            "kwh": [str(1000 + 37 * i) for i in range(40)],
        }
    ).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "zone.csv").write_text("north;N;*\nsouth;S;*\neast;E;*\nwest;W;*\n")
    (tmp_path / "key").write_text(KEY)
    _policy(tmp_path, {})
    return tmp_path


def _policy(folder: Path, protection: dict, hierarchies: dict | None = None) -> None:
    document = {
        "dataset": {"subject": "meter", "identifiers": ["name"]},
        "hierarchies": hierarchies or {"age": {"bands": [5, 10, 20]}, "zone": "zone.csv"},
        "release": {
            "kind": "microdata",
            "quasi_identifiers": {"age": {"hierarchy": "age"}, "zone": {"hierarchy": "zone"}},
            "sensitive": ["kwh"],
            "protection": {"k": 3, "suppression_limit": 0.05, **protection},
        },
    }
    (folder / "policy.yaml").write_text(yaml.safe_dump(document))


def _run(folder: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "anonymize",
            str(folder / "data.csv"),
            "--policy",
            str(folder / "policy.yaml"),
            "--out",
            str(folder / "out.csv"),
            "--manifest",
            str(folder / "m.json"),
            *extra,
        ],
    )


def test_release_with_pseudonyms_and_manifest(workspace):
    result = _run(workspace, "--pseudonym-key-file", str(workspace / "key"), "--agreement", "lab-1")
    assert result.exit_code == 0, result.output
    released = pd.read_csv(workspace / "out.csv", dtype=str)
    manifest = json.loads((workspace / "m.json").read_text())
    assert list(released.columns) == ["meter", "age", "zone", "kwh"]
    assert "name" not in released.columns
    assert not set(released["meter"]) & {f"PDL{i:014d}" for i in range(40)}
    plain = {hashlib.sha256(f"PDL{i:014d}".encode()).hexdigest()[:32] for i in range(40)}
    assert not set(released["meter"]) & plain
    assert released.groupby(["age", "zone"]).size().min() >= 3
    assert manifest["records_released"] + manifest["records_suppressed"] == 40
    assert set(manifest["node"]) == {"age", "zone"}
    assert {"loss", "entropy", "discernibility", "average_class_size"} <= set(manifest["utility"])
    assert manifest["risk"]["prosecutor_highest"] <= 1 / 3


def test_two_agreements_never_share_a_pseudonym(workspace):
    key = str(workspace / "key")
    _run(workspace, "--pseudonym-key-file", key, "--agreement", "lab-1")
    first = set(pd.read_csv(workspace / "out.csv", dtype=str)["meter"])
    _run(workspace, "--pseudonym-key-file", key, "--agreement", "lab-2")
    assert first.isdisjoint(pd.read_csv(workspace / "out.csv", dtype=str)["meter"])


@pytest.mark.parametrize(
    ("protection", "hierarchies", "keyed", "message"),
    [
        ({}, None, False, "needs a pseudonym key"),
        ({}, {"age": {"bands": [5]}}, True, "unknown hierarchy"),
        ({}, {"age": {"bands": [5]}, "zone": "missing.csv"}, True, "cannot read hierarchy"),
        ({"l": {"kind": "distinct", "l": 50}}, None, True, "best node found"),
        ({"k": 1}, None, True, "release.protection.k"),
        ({"l": {"kind": "distinct", "l": 1}}, None, True, "release.protection.l.l"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(workspace, protection, hierarchies, keyed, message):
    _policy(workspace, protection, hierarchies)
    key = ("--pseudonym-key-file", str(workspace / "key"), "--agreement", "a") if keyed else ()
    result = _run(workspace, *key)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (workspace / "out.csv").exists()
    assert not (workspace / "m.json").exists()


def test_a_column_naming_an_undeclared_hierarchy_exits_2(workspace: Path) -> None:
    # The README's example once named `salary` for the sensitive column without declaring it:
    # a KeyError and a traceback (exit 1) instead of one message.
    document = yaml.safe_load((workspace / "policy.yaml").read_text())
    document["dataset"]["columns"] = {"kwh": {"hierarchy": "salary"}}
    (workspace / "policy.yaml").write_text(yaml.safe_dump(document))
    result = _run(workspace, "--pseudonym-key-file", str(workspace / "key"), "--agreement", "a")
    assert result.exit_code == 2
    assert "column 'kwh' names hierarchy 'salary'" in result.output
    assert "Traceback" not in result.output
    assert not (workspace / "out.csv").exists()


def test_value_not_covered_by_hierarchy_exits_2(workspace):
    (workspace / "zone.csv").write_text("north;N;*\nsouth;S;*\n")
    result = _run(workspace, "--pseudonym-key-file", str(workspace / "key"), "--agreement", "a")
    assert result.exit_code == 2
    assert "does not cover" in result.output
    assert not (workspace / "out.csv").exists()


def test_a_subject_that_repeats_exits_2_and_writes_nothing(workspace: Path) -> None:
    # One meter read three times, alone in its age band: k = 3 counted its three records, and
    # the release showed one pseudonym three times in a class of its own.
    data = pd.read_csv(workspace / "data.csv", dtype=str)
    lonely = data.iloc[[0, 0, 0]].assign(age="95", zone="north")
    pd.concat([data, lonely]).to_csv(workspace / "data.csv", index=False)
    result = _run(workspace, "--pseudonym-key-file", str(workspace / "key"), "--agreement", "a")
    assert result.exit_code == 2
    assert "dataset.subject" in result.output and "one record per subject" in result.output
    assert not (workspace / "out.csv").exists()
    assert not (workspace / "m.json").exists()


def _service_shape(folder: Path, level: str = "level") -> Path:
    """A microdata policy in the service's shape: stored levels and roles on the dataset."""
    document = {
        "dataset": {
            "subject": "meter",
            "identifiers": ["name"],
            "columns": {
                "commune": {"hierarchy": "geo_fr", level: "commune"},
                "age": {"hierarchy": "age_bands"},
                "zone": {"hierarchy": "zone"},
                "kwh": {"type": "sensitive"},
            },
        },
        "hierarchies": {"age_bands": {"bands": [10, 20]}, "zone": "zone.csv"},
        "release": {
            "kind": "microdata",
            "quasi_identifiers": {"commune": {}, "age": {}, "zone": {}},
            "sensitive": ["kwh"],
            "protection": {"k": 4},
        },
    }
    path = folder / "service-policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _anonymize(workspace: Path, policy: Path) -> Any:
    data, out, key = (str(workspace / name) for name in ("data.csv", "out.csv", "key"))
    arguments = ["anonymize", data, "--policy", str(policy), "--out", out]
    return runner.invoke(app, [*arguments, "--pseudonym-key-file", key, "--agreement", "lab"])


def test_a_policy_in_the_service_shape_runs_offline(workspace: Path) -> None:
    data = pd.read_csv(workspace / "data.csv", dtype=str)
    data["commune"] = ["74001", "74002", "74003", "01001"] * 10
    data.to_csv(workspace / "data.csv", index=False)
    policy = _service_shape(workspace)
    result = _anonymize(workspace, policy)
    assert result.exit_code == 0, result.output
    out = pd.read_csv(workspace / "out.csv", dtype=str)
    assert sorted(out.columns) == ["age", "commune", "kwh", "meter", "zone"]  # no identifier
    assert not set(out["meter"]) & set(data["meter"])  # pseudonyms only
    assert out.groupby(["commune", "age", "zone"]).size().min() >= 4


def test_a_service_shape_policy_error_names_its_field(workspace: Path) -> None:
    policy = _service_shape(workspace, level="levl")
    result = _anonymize(workspace, policy)
    assert result.exit_code == 2
    assert "dataset.columns.commune.levl" in result.output
    assert not (workspace / "out.csv").exists()

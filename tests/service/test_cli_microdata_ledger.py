"""``partage anonymize --ledger``: a microdata release is protected jointly with the microdata
releases the partner holds under the same pseudonym key (the security tester's attack, offline)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from service.cli import app
from tests.service.test_microdata_agreements import DEPARTEMENTS, people

runner = CliRunner()
BOTH = ("age", "departement")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    people().drop(columns=["sex"]).to_csv(tmp_path / "data.csv", index=False)
    regions = "".join(f"{d};R{d[0]};*\n" for d in DEPARTEMENTS)
    (tmp_path / "departements.csv").write_text(regions)
    (tmp_path / "key").write_text("s" * 40)
    return tmp_path


def _policy(folder: Path, quasi_identifiers: tuple[str, ...], k: int = 5) -> Path:
    hierarchy = {"age": "age", "departement": "departements"}
    document = {
        "dataset": {"subject": "person_id", "identifiers": ["name"]},
        "hierarchies": {"age": {"bands": [5, 10, 20, 40]}, "departements": "departements.csv"},
        "release": {
            "kind": "microdata",
            "quasi_identifiers": {q: {"hierarchy": hierarchy[q]} for q in quasi_identifiers},
            "sensitive": ["diagnosis"],
            "protection": {"k": k, "suppression_limit": 0.05},
        },
    }
    path = folder / f"policy-{len(quasi_identifiers)}-{k}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _anonymize(folder: Path, qis: tuple[str, ...], out: str, *extra: str, k: int = 5):
    return runner.invoke(
        app,
        [
            "anonymize",
            str(folder / "data.csv"),
            "--policy",
            str(_policy(folder, qis, k)),
            "--out",
            str(folder / f"{out}.csv"),
            "--manifest",
            str(folder / f"{out}.json"),
            "--pseudonym-key-file",
            str(folder / "key"),
            *extra,
        ],
    )


def joint_sizes(new: pd.DataFrame, held: pd.DataFrame) -> pd.Series:
    """The partner's join by pseudonym: each released record's (new class, held class)."""
    renamed = held.rename(columns={c: f"held {c}" for c in held.columns if c != "person_id"})
    frame = new.merge(renamed, on="person_id", how="left").fillna("(absent)")
    columns = [c for c in frame.columns if c not in {"person_id", "diagnosis", "held diagnosis"}]
    return frame.groupby(columns).size()


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def test_age_alone_after_age_and_departement_cannot_be_joined_to_break_k(workspace):
    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    first = _anonymize(workspace, BOTH, "first", "--agreement", "lab-1", *ledger)
    assert first.exit_code == 0, first.output
    # The attack, without the ledger: joined by pseudonym, classes fall below k.
    alone = _anonymize(workspace, ("age",), "alone", "--agreement", "lab-1")
    assert alone.exit_code == 0, alone.output
    assert joint_sizes(_read(workspace, "alone"), _read(workspace, "first")).min() < 5

    second = _anonymize(workspace, ("age",), "second", "--agreement", "lab-1", *ledger)
    assert second.exit_code == 0, second.output
    assert joint_sizes(_read(workspace, "second"), _read(workspace, "first")).min() >= 5
    linkage = json.loads((workspace / "second.json").read_text())["linkage"]
    assert linkage["held_releases"][0].startswith("microdata release 1 of the ledger (")

    # The same terms again add nothing to the join: released, recorded, manifest says so.
    again = _anonymize(workspace, BOTH, "again", "--agreement", "lab-1", *ledger)
    assert again.exit_code == 0, again.output
    assert json.loads((workspace / "again.json").read_text())["linkage"]["records_suppressed"] == 0
    assert _read(workspace, "again").equals(_read(workspace, "first"))


def test_microdata_under_another_key_is_refused_to_the_same_partner(workspace):
    # Pseudonyms under another agreement do not match, but exact sensitive values could still
    # join the records: nothing proves the pair safe, so the second is refused.
    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    assert _anonymize(workspace, BOTH, "first", "--agreement", "lab-1", *ledger).exit_code == 0
    other = _anonymize(workspace, ("age",), "other", "--agreement", "lab-2", *ledger)
    assert other.exit_code == 2
    assert "holds_other_microdata" in other.output and "[--ledger]" in other.output
    assert "microdata release 1 of the ledger" in other.output
    assert not (workspace / "other.csv").exists() and not (workspace / "other.json").exists()
    with sqlite3.connect(workspace / "ledger.db") as connection:
        assert connection.execute("SELECT count(*) FROM microdata_releases").fetchone() == (1,)


def test_another_partners_pseudonyms_are_not_joined(workspace):
    first = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    assert _anonymize(workspace, BOTH, "first", "--agreement", "lab-1", *first).exit_code == 0
    second = ("--ledger", str(workspace / "ledger.db"), "--partner", "city")
    other = _anonymize(workspace, ("age",), "other", "--agreement", "city-1", *second)
    assert other.exit_code == 0, other.output
    manifest = json.loads((workspace / "other.json").read_text())
    assert manifest["linkage"] == {"held_releases": [], "records_suppressed": 0}
    assert not set(_read(workspace, "other")["person_id"]) & set(
        _read(workspace, "first")["person_id"]
    )


def test_a_ledger_without_a_subject_is_refused(workspace):
    policy = yaml.safe_load(_policy(workspace, BOTH).read_text())
    policy["dataset"] = {"identifiers": ["name", "person_id"]}
    (workspace / "no-subject.yaml").write_text(yaml.safe_dump(policy))
    result = runner.invoke(
        app,
        [
            "anonymize",
            str(workspace / "data.csv"),
            "--policy",
            str(workspace / "no-subject.yaml"),
            "--out",
            str(workspace / "out.csv"),
            "--ledger",
            str(workspace / "ledger.db"),
        ],
    )
    assert result.exit_code == 2
    assert "missing_subject" in result.output
    assert not (workspace / "out.csv").exists()


def test_a_damaged_ledger_entry_is_refused(workspace):
    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    assert _anonymize(workspace, BOTH, "first", "--agreement", "lab-1", *ledger).exit_code == 0
    with sqlite3.connect(workspace / "ledger.db") as connection:
        connection.execute('UPDATE microdata_releases SET classes = \'{"a": "young"}\'')
    again = _anonymize(workspace, BOTH, "again", "--agreement", "lab-1", *ledger)
    assert again.exit_code == 2
    assert "ledger_damaged" in again.output
    assert not (workspace / "again.csv").exists()


def test_a_release_no_node_protects_jointly_is_refused_and_not_recorded(workspace):
    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    first = _anonymize(workspace, BOTH, "first", "--agreement", "lab-1", *ledger, k=2)
    assert first.exit_code == 0, first.output
    second = _anonymize(workspace, ("age",), "second", "--agreement", "lab-1", *ledger, k=20)
    assert second.exit_code == 2
    assert "linkable_with_held" in second.output
    assert "microdata release 1 of the ledger" in second.output
    assert not (workspace / "second.csv").exists()
    assert not (workspace / "second.json").exists()
    with sqlite3.connect(workspace / "ledger.db") as connection:
        assert connection.execute("SELECT count(*) FROM microdata_releases").fetchone() == (1,)


def test_a_release_recorded_meanwhile_by_another_run_refuses_this_one(workspace, monkeypatch):
    # Two runs of one partner at once: each reads the ledger before the other records. The one
    # that records second was protected without the first: refused, nothing written.
    import anonymization.microdata as engine

    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    real = engine.anonymize_microdata

    def with_a_concurrent_run(*args, **kwargs):
        monkeypatch.setattr(engine, "anonymize_microdata", real)
        concurrent = _anonymize(workspace, BOTH, "first", "--agreement", "lab-1", *ledger)
        assert concurrent.exit_code == 0, concurrent.output
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "anonymize_microdata", with_a_concurrent_run)
    second = _anonymize(workspace, ("age",), "second", "--agreement", "lab-1", *ledger)
    assert second.exit_code == 2, second.output
    assert "ledger_changed" in second.output
    assert not (workspace / "second.csv").exists()
    with sqlite3.connect(workspace / "ledger.db") as connection:
        assert connection.execute("SELECT count(*) FROM microdata_releases").fetchone() == (1,)
    again = _anonymize(workspace, ("age",), "second", "--agreement", "lab-1", *ledger)
    assert again.exit_code == 0, again.output
    assert joint_sizes(_read(workspace, "second"), _read(workspace, "first")).min() >= 5


def _release(folder: Path, out: str, *extra: str):
    """An aggregate release of the same file: subjects by diagnosis."""
    policy = {
        "dataset": {"subject": "person_id", "identifiers": ["name"], "columns": {"diagnosis": {}}},
        "release": {"dimensions": {"diagnosis": "value"}, "protection": {"k": 5}},
    }
    (folder / "aggregate.yaml").write_text(yaml.safe_dump(policy))
    request = {"group_by": {"diagnosis": "value"}, "measures": ["subjects"], "format": "csv"}
    (folder / "request.yaml").write_text(yaml.safe_dump(request))
    arguments = ["release", str(folder / "data.csv"), "--policy", str(folder / "aggregate.yaml")]
    arguments += ["--request", str(folder / "request.yaml"), "--out", str(folder / f"{out}.csv")]
    return runner.invoke(app, [*arguments, *extra])


def _entries(ledger: Path) -> tuple[int, int]:
    with sqlite3.connect(ledger) as connection:
        return (
            connection.execute("SELECT count(*) FROM releases").fetchone()[0],
            connection.execute("SELECT count(*) FROM microdata_releases").fetchone()[0],
        )


def test_microdata_of_data_the_partner_holds_aggregates_of_is_refused(workspace):
    # Records and aggregates of one population are not protected jointly: a suppressed cell
    # would be counted back from the records. One kind per partner and data.
    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    first = _release(workspace, "aggregate", *ledger)
    assert first.exit_code == 0, first.output
    second = _anonymize(workspace, BOTH, "records", "--agreement", "lab-1", *ledger)
    assert second.exit_code == 2
    assert "holds_aggregates" in second.output and "release 1 of the ledger" in second.output
    assert not (workspace / "records.csv").exists()
    assert _entries(workspace / "ledger.db") == (1, 0)
    other = ("--ledger", str(workspace / "ledger.db"), "--partner", "city")
    elsewhere = _anonymize(workspace, BOTH, "records", "--agreement", "city-1", *other)
    assert elsewhere.exit_code == 0, elsewhere.output


def test_aggregates_of_data_the_partner_holds_microdata_of_are_refused(workspace):
    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    first = _anonymize(workspace, BOTH, "records", "--agreement", "lab-1", *ledger)
    assert first.exit_code == 0, first.output
    second = _release(workspace, "aggregate", *ledger)
    assert second.exit_code == 2
    assert "holds_microdata" in second.output and "microdata release 1" in second.output
    assert not (workspace / "aggregate.csv").exists()
    assert _entries(workspace / "ledger.db") == (0, 1)
    # Another file (other data) is another population as far as the ledger knows.
    people().drop(columns=["sex"]).head(300).to_csv(workspace / "data.csv", index=False)
    assert _release(workspace, "aggregate", *ledger).exit_code == 0


def test_a_release_of_the_other_kind_recorded_meanwhile_refuses_this_one(workspace, monkeypatch):
    # Each run checks the ledger before the other records: the later recording sees the
    # partner's ledger changed and writes nothing.
    import anonymization.microdata as engine

    ledger = ("--ledger", str(workspace / "ledger.db"), "--partner", "lab")
    real = engine.anonymize_microdata

    def with_a_concurrent_release(*args, **kwargs):
        monkeypatch.setattr(engine, "anonymize_microdata", real)
        concurrent = _release(workspace, "aggregate", *ledger)
        assert concurrent.exit_code == 0, concurrent.output
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "anonymize_microdata", with_a_concurrent_release)
    records = _anonymize(workspace, BOTH, "records", "--agreement", "lab-1", *ledger)
    assert records.exit_code == 2, records.output
    assert "ledger_changed" in records.output
    assert not (workspace / "records.csv").exists()
    assert _entries(workspace / "ledger.db") == (1, 0)

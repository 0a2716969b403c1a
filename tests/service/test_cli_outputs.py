"""Where ``release`` and ``anonymize`` write: never over an input or the other output, never a
traceback when a file cannot be written, and a ledger that records only delivered releases."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anonymization import ledger as ledger_module
from anonymization.ledger import SQLiteLedger
from service.cli import app
from tests.service.test_cli_microdata import workspace
from tests.service.test_cli_release import release, workdir

runner = CliRunner()
__all__ = ["workdir", "workspace"]

INPUTS = {
    "DATA": "payments.csv",
    "--policy": "payments-policy.yaml",
    "--request": "payments-request.yaml",
    "--ledger": "ledger.db",
    "--noise-secret-file": "secret",
}


def digests(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def ledger_entries(path: Path) -> int:
    with sqlite3.connect(path) as con:
        return int(con.execute("SELECT count(*) FROM releases").fetchone()[0])


def alias(folder: Path, name: str, how: str) -> str:
    """Another name for ``folder/name``: itself, another spelling, a symbolic or a hard link."""
    if how == "same":
        return str(folder / name)
    if how == "dotted":
        return f"{folder}/./../{folder.name}/{name}"
    other = folder / f"alias-of-{name}"
    if how == "symlink":
        other.symlink_to(folder / name)
    else:
        other.hardlink_to(folder / name)
    return str(other)


@pytest.mark.parametrize("how", ["same", "dotted", "symlink", "hardlink"])
@pytest.mark.parametrize("output", ["--out", "--manifest"])
@pytest.mark.parametrize("role", INPUTS)
def test_an_output_naming_an_input_exits_2_and_changes_nothing(
    workdir: Path, role: str, output: str, how: str
) -> None:
    (workdir / "secret").write_bytes(b"s" * 32)
    SQLiteLedger(workdir / "ledger.db")
    path = alias(workdir, INPUTS[role], how)
    before = digests(workdir)
    options = {"--out": str(workdir / "out.csv"), "--manifest": str(workdir / "manifest.json")}
    options[output] = path
    arguments = ["--ledger", str(workdir / "ledger.db"), "--manifest", options["--manifest"]]
    arguments += ["--noise-secret-file", str(workdir / "secret")]
    code, text = release(workdir, *arguments, out=options["--out"])
    assert code == 2, text
    message = " ".join(text.split())
    assert f"[{output}]" in message and f"is also {role}" in message
    assert digests(workdir) == before
    assert ledger_entries(workdir / "ledger.db") == 0


def test_the_manifest_cannot_be_the_table(workdir: Path) -> None:
    code, output = release(workdir, "--manifest", str(workdir / "out.csv"))
    assert code == 2 and "is also --manifest" in output
    assert not (workdir / "out.csv").exists()


@pytest.mark.parametrize("output", ["--out", "--manifest"])
@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("adir", "is a directory"),
        ("afile/x.csv", "is not a directory"),
        ("/proc/partage-test.csv", "cannot write in /proc"),
    ],
)
def test_an_unwritable_output_exits_2_before_any_work(
    workdir: Path, output: str, target: str, message: str
) -> None:
    (workdir / "adir").mkdir()
    (workdir / "afile").write_text("x")
    ledger = workdir / "ledger.db"
    SQLiteLedger(ledger)
    before = digests(workdir)
    path = target if target.startswith("/") else str(workdir / target)
    extra = ["--ledger", str(ledger)]
    if output == "--manifest":
        extra += ["--manifest", path]
        code, text = release(workdir, *extra)
    else:
        code, text = release(workdir, *extra, out=path)
    assert code == 2, text
    assert f"[{output}]" in text and message in " ".join(text.split())
    assert digests(workdir) == before and ledger_entries(ledger) == 0
    assert sorted(os.listdir(workdir / "adir")) == []


def fail_writing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Writing ``name``'s temporary file fails as a full disk would."""
    real = tempfile.mkstemp

    def mkstemp(*args: object, prefix: str = "", **kwargs: object) -> tuple[int, str]:
        if prefix.startswith(f".{name}."):
            raise OSError(28, "No space left on device")
        return real(*args, prefix=prefix, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("failing", ["out.csv", "manifest.json"])
def test_a_failed_write_records_nothing_and_leaves_no_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    ledger, manifest = workdir / "ledger.db", str(workdir / "manifest.json")
    code, output = release(workdir, "--ledger", str(ledger), "--manifest", manifest)
    assert code == 0 and ledger_entries(ledger) == 1, output
    (workdir / "out.csv").unlink()
    (workdir / "manifest.json").unlink()
    before = digests(workdir)
    fail_writing(monkeypatch, failing)
    code, output = release(workdir, "--ledger", str(ledger), "--manifest", manifest)
    assert code == 2 and "No space left on device" in output
    assert digests(workdir) == before and ledger_entries(ledger) == 1


def test_a_failed_ledger_record_leaves_no_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = workdir / "ledger.db"
    SQLiteLedger(ledger)
    before = digests(workdir)

    def locked(*_args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    # The recording transaction finds the file locked (as another process's write would).
    monkeypatch.setattr(ledger_module, "_refuse_if_recorded_meanwhile", locked)
    code, output = release(workdir, "--ledger", str(ledger), "--manifest", str(workdir / "m.json"))
    assert code == 2 and "[ledger]" in output and "database is locked" in output
    assert digests(workdir) == before


def test_a_blank_partner_exits_2(workdir: Path) -> None:
    code, output = release(workdir, "--ledger", str(workdir / "ledger.db"), "--partner", " ")
    assert code == 2 and "[--partner]" in output
    assert not (workdir / "out.csv").exists()


def anonymize(folder: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["anonymize", str(folder / "data.csv"), "--policy", str(folder / "policy.yaml"), *extra],
    )
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "data.csv"], "[--out]: {dir}/data.csv is also DATA"),
        (["--out", "policy.yaml"], "[--out]: {dir}/policy.yaml is also --policy"),
        (["--out", "key", "--pseudonym-key-file", "key"], "is also --pseudonym-key-file"),
        (["--out", "o.csv", "--manifest", "o.csv"], "[--out]: {dir}/o.csv is also --manifest"),
        (["--out", "adir"], "[--out]: {dir}/adir is a directory"),
        (["--out", "o.csv", "--manifest", "adir"], "[--manifest]: {dir}/adir is a directory"),
        (["--out", "o.csv", "--delimiter", ""], "[--delimiter]: '' is not one character"),
    ],
)
def test_anonymize_refuses_outputs_it_cannot_or_must_not_write(
    workspace: Path, extra: list[str], message: str
) -> None:
    (workspace / "adir").mkdir()
    before = digests(workspace)
    paths = [str(workspace / value) if value and "-" not in value[0] else value for value in extra]
    code, output = anonymize(workspace, *paths)
    assert code == 2, output
    assert message.format(dir=workspace) in output
    assert digests(workspace) == before


def test_anonymize_with_an_unwritable_manifest_leaves_no_table(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_writing(monkeypatch, "manifest.json")
    out, manifest = str(workspace / "o.csv"), str(workspace / "manifest.json")
    key = ["--pseudonym-key-file", str(workspace / "key"), "--agreement", "a1"]
    code, output = anonymize(workspace, "--out", out, "--manifest", manifest, *key)
    assert code == 2 and "[--manifest]" in output and "No space left" in output
    assert not (workspace / "o.csv").exists() and not (workspace / "manifest.json").exists()
    assert [p.name for p in workspace.iterdir() if p.name.startswith(".")] == []


def test_anonymize_a_policy_that_is_not_utf8_exits_2(workspace: Path) -> None:
    (workspace / "policy.yaml").write_bytes(b"\xff\xfe\x00bad")
    code, output = anonymize(workspace, "--out", str(workspace / "o.csv"))
    assert code == 2 and "is not UTF-8 text" in output


def test_an_output_that_is_a_symbolic_link_loop_is_replaced_not_a_traceback(workdir: Path) -> None:
    (workdir / "loop").symlink_to(workdir / "loop")
    code, output = release(workdir, out="loop")
    assert code == 0, output
    assert (workdir / "loop").is_file() and not (workdir / "loop").is_symlink()


def test_a_release_recorded_meanwhile_by_another_run_refuses_this_one(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two runs for one partner at once: each reads the ledger before the other records. The one
    # that records second was protected without the first: refused, nothing written.
    import anonymization.release as engine

    ledger = workdir / "ledger.db"
    real = engine.run_release

    def with_a_concurrent_run(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(engine, "run_release", real)
        code, output = release(workdir, "--ledger", str(ledger), out="first.csv")
        assert code == 0, output
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "run_release", with_a_concurrent_run)
    code, output = release(workdir, "--ledger", str(ledger), "--manifest", str(workdir / "m.json"))
    assert code == 2 and "ledger_changed" in output, output
    assert not (workdir / "out.csv").exists() and not (workdir / "m.json").exists()
    assert ledger_entries(ledger) == 1
    code, output = release(workdir, "--ledger", str(ledger))
    assert code == 0, output
    assert ledger_entries(ledger) == 2

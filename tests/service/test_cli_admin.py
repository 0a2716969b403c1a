"""The administrators' commands: migrate, create the first admin client once, rotate keys."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.config import get_settings

runner = CliRunner()


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PARTAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PARTAGE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("PARTAGE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_create_client_with_save_is_idempotent(environment: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    saved = environment / "var" / "admin.json"
    first = runner.invoke(app, ["admin", "create-client", "admin", "--save", str(saved)])
    assert first.exit_code == 0, first.output
    credentials = json.loads(saved.read_text())
    assert credentials["client_id"] in first.output
    assert saved.stat().st_mode & 0o777 == 0o600
    second = runner.invoke(app, ["admin", "create-client", "admin", "--save", str(saved)])
    assert second.exit_code == 0
    assert json.loads(saved.read_text()) == credentials


def test_unknown_scope_exits_2(environment: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    result = runner.invoke(app, ["admin", "create-client", "x", "--scope", "root"])
    assert result.exit_code == 2
    assert "unknown scope" in result.output


def test_key_rotation_commands(environment: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    signing = sorted(path.stem for path in (environment / "keys" / "signing").glob("*.json"))
    assert len(signing) == 2
    verified = runner.invoke(app, ["audit-log", "verify"])
    assert verified.exit_code == 0 and "intact: 2 entries" in verified.output, verified.output
    with sqlite3.connect(environment / "cli.db") as connection:
        logged = connection.execute(
            "SELECT object FROM audit_event WHERE action = 'signing_key.rotated' ORDER BY seq"
        ).fetchall()
    assert sorted(object_ for (object_,) in logged) == [f"signing_key:{kid}" for kid in signing]
    rotated = runner.invoke(app, ["keys", "rotate-storage"])
    assert rotated.exit_code == 0
    assert (
        "0 dataset key(s), 0 pseudonym key(s), 0 release file key(s) re-wrapped" in rotated.output
    )


def test_audit_log_verify_on_a_fresh_install(environment: Path) -> None:
    """No signing key exists yet: the chain is empty and intact (it crashed in zip())."""
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["audit-log", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact: 0 entries" in result.output
    assert not (environment / "keys" / "signing").exists()


def rows(environment: Path, table: str) -> int:
    with sqlite3.connect(environment / "cli.db") as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.mark.parametrize(
    ("save", "content", "message"),
    [
        ("adir", None, "is a directory"),
        ("afile/creds.json", None, "is not a directory"),
        ("/proc/partage-creds.json", None, "cannot write in /proc"),
        ("bad.json", b"{not json", "does not hold saved credentials"),
        ("list.json", b"[1]", "does not hold saved credentials"),
        ("binary.json", b"\xff\xfe\x00", "does not hold saved credentials"),
        ("other.json", b'{"client_id": 3}', "does not hold saved credentials"),
    ],
)
def test_a_save_file_that_cannot_be_used_creates_no_client(
    environment: Path, save: str, content: bytes | None, message: str
) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    (environment / "adir").mkdir()
    (environment / "afile").write_text("x")
    path = Path(save) if save.startswith("/") else environment / save
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["admin", "create-client", "ops", "--save", str(path)])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "[--save]" in output and message in output and "Traceback" not in output
    assert rows(environment, "oauth_client") == rows(environment, "audit_event") == 0
    if content is not None:
        assert path.read_bytes() == content


def test_a_failed_save_rolls_the_client_back(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0

    def full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("service.cli_admin.write_private_json", full)
    saved = environment / "admin.json"
    result = runner.invoke(app, ["admin", "create-client", "ops", "--save", str(saved)])
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert rows(environment, "oauth_client") == rows(environment, "audit_event") == 0
    assert not saved.exists()


def test_a_blank_client_name_exits_2(environment: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["admin", "create-client", " "])
    assert result.exit_code == 2 and "[name]" in result.output
    assert rows(environment, "oauth_client") == 0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("\udcff\udcfe", "unicode string"),  # bytes ff fe on the command line: not UTF-8
        ("x" * 201, "at most 200 characters"),
        ("a\x1bb", "U+001B"),
    ],
)
def test_a_client_name_the_api_would_refuse_exits_2(
    environment: Path, name: str, reason: str
) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["admin", "create-client", name])
    assert result.exit_code == 2, result.output
    assert "[name]" in result.output and reason in result.output
    assert rows(environment, "oauth_client") == rows(environment, "audit_event") == 0


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999/jwks", "https://"])
def test_a_jwks_url_that_does_not_parse_exits_2_naming_it(environment: Path, url: str) -> None:
    manifest = environment / "manifest.json"
    manifest.write_text("{}")
    result = runner.invoke(app, ["verify", str(manifest), str(manifest), "--jwks", url])
    assert result.exit_code == 2, result.output
    assert "[--jwks]" in result.output and url in result.output

"""The administrators' commands: migrate, create the first admin client once, rotate keys."""

from __future__ import annotations

import json
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
    assert len(list((environment / "keys" / "signing").glob("*.json"))) == 2
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

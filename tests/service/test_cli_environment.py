"""A bad environment for the service's commands (a ``PARTAGE_*`` variable, a database that cannot
be used or is not migrated) and malformed inputs of ``verify``: one message, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.service.test_cli_admin import environment

runner = CliRunner()
__all__ = ["environment"]
SERVICE_COMMANDS = [
    ["db", "upgrade"],
    ["admin", "create-client", "x"],
    ["keys", "rotate"],
    ["keys", "rotate-storage"],
    ["audit-log", "verify"],
    ["audit-log", "sign"],
    ["releases", "expire"],
]
DATABASE_COMMANDS = [
    command for command in SERVICE_COMMANDS if command != ["keys", "rotate-storage"]
]


def run(*arguments: str) -> tuple[int, str]:
    result = runner.invoke(app, list(arguments))
    return result.exit_code, " ".join(result.output.split())


def file_of(folder: Path) -> Path:
    (folder / "afile").write_text("x")
    return folder / "afile"


@pytest.mark.parametrize("command", SERVICE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PARTAGE_TOKEN_TTL_SECONDS", "abc", "valid integer"),
        ("PARTAGE_KEYS_DIR", file_of, "is not a directory"),
        ("PARTAGE_DATA_DIR", lambda folder: file_of(folder) / "sub", "is not a directory"),
        ("PARTAGE_PORT", "99999", "less than or equal to 65535"),
    ],
)
def test_a_setting_pydantic_refuses_is_named(
    environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    variable: str,
    value: object,
    message: str,
) -> None:
    monkeypatch.setenv(variable, str(value(environment) if callable(value) else value))
    code, output = run(*command)
    assert code == 2, output
    assert f"[{variable}]" in output and message in output


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", "not a database URL"),
        ("foo://x", "not a database URL"),
        ("sqlite:///{folder}/notdb.db", "file is not a database"),
        ("postgresql+psycopg://u:p@127.0.0.1:1/x", "Connection refused"),
    ],
)
def test_a_database_that_cannot_be_used_is_named(
    environment: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], url: str, message: str
) -> None:
    (environment / "notdb.db").write_text("not a database")
    monkeypatch.setenv("PARTAGE_DATABASE_URL", url.format(folder=environment))
    code, output = run(*command)
    assert code == 2, output
    assert "[PARTAGE_DATABASE_URL]" in output and message in output
    assert "p@127" not in output, "the URL's password is not shown"


@pytest.mark.parametrize(
    "command", [c for c in DATABASE_COMMANDS if c != ["db", "upgrade"]], ids=" ".join
)
def test_a_database_never_migrated_says_to_upgrade(environment: Path, command: list[str]) -> None:
    code, output = run(*command)
    assert code == 2, output
    assert "[PARTAGE_DATABASE_URL]" in output and "run `partage db upgrade`" in output


def test_serve_refuses_a_port_out_of_range(environment: Path) -> None:
    code, output = run("serve", "--port", "99999")
    assert code == 2 and "--port" in output


@pytest.mark.parametrize(
    ("manifest", "jwks", "message"),
    [
        ("[1]", '{"keys": []}', "[MANIFEST]: {folder}/m.json is not a release manifest"),
        ("{", '{"keys": []}', "[MANIFEST]: cannot read {folder}/m.json as JSON"),
        ("{}", "[]", "[--jwks]: {folder}/jwks.json is not a JWKS"),
        ("{}", '{"keys": "x"}', "[--jwks]: {folder}/jwks.json is not a JWKS"),
        ("{}", '{"keys": [1]}', "[--jwks]: {folder}/jwks.json is not a JWKS"),
        ("{}", "\xff", "[--jwks]: cannot read {folder}/jwks.json as JSON"),
    ],
)
def test_verify_tells_malformed_input_from_a_failed_verification(
    environment: Path, manifest: str, jwks: str, message: str
) -> None:
    (environment / "m.json").write_text(manifest)
    (environment / "jwks.json").write_text(jwks, encoding="latin-1")
    (environment / "t.csv").write_text("a,b\n")
    folder = environment
    arguments = [str(folder / "m.json"), str(folder / "t.csv"), "--jwks", str(folder / "jwks.json")]
    code, output = run("verify", *arguments)
    assert code == 2, output
    assert message.format(folder=folder) in output
    signed = {"signature": {"alg": "Ed25519", "kid": "k", "value": "abc"}, "outputs": {}}
    (folder / "m.json").write_text(json.dumps(signed))
    (folder / "jwks.json").write_text('{"keys": []}')
    code, output = run("verify", *arguments)
    assert code == 1 and "NOT VERIFIED: no key 'k'" in output

"""Where the migrations live: the top-level ``alembic/`` folder, installed as a namespace package
so that ``partage db upgrade`` finds them from any directory, without shadowing the library."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from anonymization.errors import PartageError
from service import migrate
from service.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_migrations_are_the_top_level_alembic_folder() -> None:
    assert migrate.migrations_directory() == ROOT / "alembic"
    assert (ROOT / "alembic" / "env.py").is_file()
    assert not (ROOT / "service" / "migrations").exists()
    # An __init__.py there would make `import alembic` in the project's folder import it.
    assert not list((ROOT / "alembic").rglob("__init__.py"))


def test_the_library_is_imported_from_the_project_folder() -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import alembic.command; print(alembic.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not Path(found).is_relative_to(ROOT / "alembic"), found


def test_the_packaging_lists_every_package_and_the_migrations() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("anonymization", "policies", "service")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {
        migrate.MIGRATIONS,
        f"{migrate.MIGRATIONS}.versions",
    }
    assert setuptools["package-dir"] == {migrate.MIGRATIONS: "alembic"}
    assert "alembic.ini" in setuptools["package-data"][migrate.MIGRATIONS]


def test_db_upgrade_works_from_another_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    environment = {
        **os.environ,
        "PARTAGE_DATABASE_URL": url,
        "PARTAGE_KEYS_DIR": str(tmp_path / "keys"),
        "PARTAGE_DATA_DIR": str(tmp_path / "data"),
    }
    partage = Path(sys.executable).parent / "partage"
    result = subprocess.run(
        [str(partage), "db", "upgrade"], cwd=tmp_path, env=environment, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with sqlite3.connect(tmp_path / "elsewhere.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_migrations_not_installed_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate, "MIGRATIONS", "partage_no_such_migrations")
    with pytest.raises(PartageError, match="not installed: reinstall partage") as raised:
        migrate.alembic_config("sqlite://")
    assert raised.value.code == "migrations_missing"

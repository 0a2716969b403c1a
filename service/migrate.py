"""Run the Alembic migrations against a database URL.

The migrations are the project's top-level ``alembic/`` directory, installed as the namespace
package ``partage_migrations`` (see pyproject.toml), so they are found from any directory.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from alembic import command
from alembic.config import Config

from anonymization.errors import PartageError

MIGRATIONS = "partage_migrations"


def migrations_directory() -> Path:
    """The installed ``alembic/`` directory (the one holding ``alembic.ini``)."""
    spec = find_spec(MIGRATIONS)
    # An editable install's finder adds a placeholder that is no directory to the package's path.
    locations = (spec.submodule_search_locations if spec else None) or []
    found = [Path(location) for location in locations if Path(location, "alembic.ini").is_file()]
    if not found:
        raise PartageError(
            f"the migrations ({MIGRATIONS}, the project's alembic/ folder) are not installed: "
            "reinstall partage",
            code="migrations_missing",
        )
    return found[0]


def alembic_config(database_url: str) -> Config:
    """The migrations' ``alembic.ini``, pointed at ``database_url``."""
    config = Config(str(migrations_directory() / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` to ``revision`` (the only way the schema is made)."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)

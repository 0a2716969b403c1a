"""What the service's commands share: their settings and database, checked before use, and a bad
environment (a ``PARTAGE_*`` variable, a database that cannot be reached or is not migrated) told
in one message naming the variable, exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from anonymization.errors import InvalidRequest, PartageError
from service.config import Settings, get_settings
from service.console import fail
from service.db import make_engine, make_sessionmaker
from service.migrate import alembic_config, upgrade

DATABASE_URL = "PARTAGE_DATABASE_URL"
Params = ParamSpec("Params")
Result = TypeVar("Result")


def service_command(command: Callable[Params, Result]) -> Callable[Params, Result]:
    """Run a service command; its typed errors, and those of a bad environment, exit 2."""

    @functools.wraps(command)
    def run(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        try:
            return command(*args, **kwargs)
        except PartageError as error:
            raise fail(error) from None
        except ValidationError as error:
            if error.title != Settings.__name__:
                raise
            raise fail(settings_error(error)) from None
        except (ArgumentError, DBAPIError, CommandError) as error:
            raise fail(database_error(error)) from None
        except OSError as error:
            raise fail(file_error(error)) from None

    return run


def settings() -> Settings:
    """The process's settings; a ``PARTAGE_*`` variable pydantic refuses is an InvalidRequest
    naming it."""
    try:
        return get_settings()
    except ValidationError as error:
        raise settings_error(error) from None


def settings_error(error: ValidationError) -> InvalidRequest:
    """The first problem of the settings, naming its ``PARTAGE_*`` variable."""
    first = error.errors()[0]
    variable = "PARTAGE_" + str(first["loc"][0]).upper() if first["loc"] else None
    message = str(first["msg"]).removeprefix("Value error, ")
    return InvalidRequest(f"{message} (got {first['input']!r})", field=variable, code="setting")


def database_error(error: Exception) -> InvalidRequest:
    """A database that cannot be used, as one message naming ``PARTAGE_DATABASE_URL``."""
    if isinstance(error, ImportError | ArgumentError):
        detail = (
            f"not a database URL this service can use ({error}); e.g. sqlite:///var/partage.db "
            "or postgresql+psycopg://user@host/database"
        )
    elif isinstance(error, DBAPIError):
        reason = " ".join(str(error.orig).split())
        detail = f"cannot use the database: {reason}"
    else:
        detail = f"cannot migrate the database: {error}"
    return InvalidRequest(detail, field=DATABASE_URL, code="database")


def file_error(error: OSError) -> InvalidRequest:
    """A file of the service's directories that cannot be used, naming the setting when the
    file is under one of them."""
    name = Path(str(error.filename))
    try:
        current = settings()
        folders = {
            "PARTAGE_KEYS_DIR": current.keys_dir.absolute(),
            "PARTAGE_DATA_DIR": current.data_dir.absolute(),
        }
    except InvalidRequest:
        folders = {}
    field = next(
        (
            var
            for var, folder in folders.items()
            if name.absolute().is_relative_to(folder.absolute())
        ),
        None,
    )
    return InvalidRequest(f"cannot use {name}: {error.strerror}", field=field, code="file")


def _engine(current: Settings) -> Engine:
    try:
        return make_engine(current.database_url)
    except (ArgumentError, ImportError) as error:
        raise database_error(error) from None


def sessions(current: Settings) -> sessionmaker[Session]:
    """Sessions on the database, once it is reachable and its schema is the code's."""
    engine = _engine(current)
    try:
        with engine.connect() as connection:
            revisions = set(MigrationContext.configure(connection).get_current_heads())
    except DBAPIError as error:
        raise database_error(error) from None
    expected = set(ScriptDirectory.from_config(alembic_config(current.database_url)).get_heads())
    if revisions != expected:
        state = f"at revision {', '.join(sorted(revisions))}" if revisions else "not migrated"
        detail = f"the database is {state}: run `partage db upgrade`"
        raise InvalidRequest(detail, field=DATABASE_URL, code="database")
    return make_sessionmaker(engine)


def migrate(current: Settings) -> None:
    """Apply every pending migration, a database that cannot be migrated told in one message."""
    _engine(current).dispose()
    try:
        upgrade(current.database_url)
    except (DBAPIError, CommandError) as error:
        raise database_error(error) from None
    except OSError as error:
        detail = f"cannot create the database's folder: {error.strerror}"
        raise InvalidRequest(detail, field=DATABASE_URL, code="database") from None

"""What every command of the ``partage`` CLI shares: its error output, progress and file writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from anonymization.errors import PartageError

stderr = Console(stderr=True, soft_wrap=True)


def fail(error: PartageError) -> typer.Exit:
    """Print one clear message naming the field and the reason; exit code 2."""
    where = f" [{error.field}]" if error.field else ""
    stderr.print(
        f"[bold red]error[/] {escape(f'({error.code}){where}: {error.detail}')}", highlight=False
    )
    return typer.Exit(code=2)


@contextmanager
def handled(quiet: bool, title: str) -> Iterator[Any]:
    """Show progress on long runs (unless quiet) and turn typed errors into exit code 2."""
    try:
        if quiet:
            yield lambda _message: None
        else:
            with stderr.status(title) as status:
                yield lambda message: status.update(f"{title}: {message}")
    except PartageError as error:
        raise fail(error) from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so a failure leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

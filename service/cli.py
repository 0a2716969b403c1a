"""The ``partage`` command line."""

from __future__ import annotations

import typer

from service.cli_admin import register

app = typer.Typer(no_args_is_help=True)
register(app)


def main() -> None:
    app()

"""The ``partage`` command line."""

from __future__ import annotations

import typer

from service.cli_microdata import anonymize

app = typer.Typer(no_args_is_help=True)


@app.callback()
def partage() -> None:
    """Partage: privacy-preserving data sharing."""


app.command("anonymize")(anonymize)


def main() -> None:
    """Entry point of the ``partage`` console script."""
    app()

"""The whole ``partage`` command line: the engine's commands and the service's."""

from __future__ import annotations

from service.cli_admin import register
from service.cli_engine import app
from service.cli_service import register as register_service
from service.demo.cli import demo

app.add_typer(demo, name="demo")
register(app)
register_service(app)

__all__ = ["app", "main"]


def main() -> None:
    """Run the whole CLI."""
    app()

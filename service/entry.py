"""The ``partage`` console script.

Offline commands run the engine-only app, without importing the service (web framework, ORM):
that saves about a second on every offline release.
"""

from __future__ import annotations

import sys

ENGINE_COMMANDS = frozenset({"release", "anonymize", "audit"})


def main() -> None:
    """Dispatch to the engine-only app or to the whole CLI."""
    if len(sys.argv) > 1 and sys.argv[1] in ENGINE_COMMANDS:
        from service.cli_engine import app
    else:
        from service.cli import app
    app()

"""The ``partage`` console script.

Offline commands run the engine-only app, without importing the service (web framework, ORM):
that saves about a second on every offline release.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

ENGINE_COMMANDS = frozenset({"release", "anonymize", "audit"})


def main() -> None:
    """Dispatch to the engine-only app or to the whole CLI."""
    if len(sys.argv) > 1 and sys.argv[1] in ENGINE_COMMANDS:
        from service.cli_engine import app

        _run_and_exit(app)
    from service.cli import app as full

    full()


def _run_and_exit(app: Callable[[], object]) -> NoReturn:
    """Run an offline command, then leave without the interpreter's teardown: freeing pandas,
    SciPy and DuckDB module by module takes about 0.1 s and nothing is left to clean up (every
    output is written, renamed and closed; no thread or service runs)."""
    try:
        app()
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe (``| head``): nothing more to say
            stream.flush()
    os._exit(code)

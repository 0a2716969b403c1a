"""Progress of long LP work (secondary suppression, the audit), reported at most once a second."""

from __future__ import annotations

import time
from collections.abc import Callable

REPORT_EVERY = 1.0  # seconds between two progress reports of a long audit


class Ticker:
    """Progress of a long audit: ``label: done/total cells`` through ``progress``, at most once
    a second and at every LP in between checks. A caller's ``progress`` may raise to stop the
    work (the service does, past a job's time limit)."""

    def __init__(self, progress: Callable[[str], None] | None, label: str, total: int) -> None:
        self.progress, self.label, self.total = progress, label, total
        self.done = 0
        self.last = time.monotonic()

    def advance(self, cells: int = 1) -> None:
        """``cells`` more cells are done."""
        self.done += cells
        self.beat()

    def beat(self) -> None:
        """Report if a second has passed since the last report."""
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= REPORT_EVERY:
            self.last = now
            self.progress(f"{self.label}: {self.done}/{self.total} cells")

"""The worker pool: a dispatcher thread that claims queued jobs for a thread pool, and runs
the periodic chores (expiring releases, signing the audit head). Started by the app's lifespan.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from service.audit.service import ChainBroken
from service.extracts import jobs, upkeep

log = logging.getLogger(__name__)


class WorkerPool:
    """Runs extract jobs in ``settings.workers`` threads of this process."""

    def __init__(self, runtime: jobs.Runtime) -> None:
        self.runtime = runtime
        self.wakeup = threading.Event()
        # Shared with the jobs: each stops at its next progress report and is queued again.
        self.stopping = runtime.stopping
        self.in_flight: set[uuid.UUID] = set()
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.dispatcher: threading.Thread | None = None

    def start(self) -> None:
        """Recover jobs a crash interrupted, then start dispatching."""
        requeued, failed = upkeep.recover(self.runtime)
        if requeued or failed:
            log.warning("interrupted jobs: %d queued again, %d failed", requeued, failed)
        self.executor = ThreadPoolExecutor(
            self.runtime.settings.workers, thread_name_prefix="partage-job"
        )
        self.dispatcher = threading.Thread(target=self._loop, name="partage-jobs", daemon=True)
        self.dispatcher.start()

    def stop(self) -> None:
        """Stop claiming; stop running jobs at their next progress report (each is queued
        again) or let them finish if past their last one (writing, committing); wait for them."""
        self.stopping.set()
        self.wakeup.set()
        if self.dispatcher is not None:
            self.dispatcher.join()
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def wake(self) -> None:
        """Look for queued jobs now (called once a new extract is committed)."""
        self.wakeup.set()

    def _loop(self) -> None:
        settings = self.runtime.settings
        next_expiry = next_signature = time.monotonic()
        while not self.stopping.is_set():
            try:
                self._dispatch()
                now = time.monotonic()
                if now >= next_expiry:
                    upkeep.expire_due(self.runtime)
                    next_expiry = now + settings.expiry_sweep_seconds
                if now >= next_signature:
                    next_signature = now + settings.audit_sign_seconds
                    upkeep.sign_audit_head(self.runtime)
            except ChainBroken as error:
                log.error("the audit log's head is not signed: %s", error.detail)
            except Exception:
                log.exception("the job dispatcher failed; retrying")
            self.wakeup.wait(settings.worker_poll_seconds)
            self.wakeup.clear()

    def _dispatch(self) -> None:
        with self.lock:
            free = self.runtime.settings.workers - len(self.in_flight)
            running = frozenset(self.in_flight)
        # A row running that no thread of this process runs (jobs are claimed in this thread,
        # and a job leaves ``in_flight`` once it ends) is a job whose outcome was not recorded.
        upkeep.recover(self.runtime, running, "the job ended without recording its outcome")
        if free <= 0 or self.executor is None:
            return
        for extract_id in upkeep.claim(self.runtime, free):
            with self.lock:
                self.in_flight.add(extract_id)
            self.executor.submit(self._run, extract_id)

    def _run(self, extract_id: uuid.UUID) -> None:
        try:
            jobs.run_job(self.runtime, extract_id)
        finally:
            with self.lock:
                self.in_flight.discard(extract_id)
            self.wakeup.set()

"""A long protection reports its progress while it solves, and its caller can stop it there
(the service stops a job past its time limit this way)."""

from __future__ import annotations

import pandas as pd
import pytest

from anonymization import exact, solver, ticker
from anonymization.hierarchies import CategoricalHierarchy
from anonymization.plan import AggregatePlan, Dimension, Measure
from anonymization.protection import Protection
from anonymization.release import run_release


class Stop(Exception):
    """Raised by the caller's progress callback."""


def _table() -> pd.DataFrame:
    rows = []
    for subject in range(60):
        a, b = f"a{subject % 6}", f"b{(subject * 7) % 5}"
        rows.append((f"s{subject}", a, b, 1.0 + subject))
    rows += [("rare1", "a9", "b0", 5.0), ("rare2", "a9", "b1", 7.0)]
    return pd.DataFrame(rows, columns=["subject", "a", "b", "x"])


def _plan() -> AggregatePlan:
    return AggregatePlan(
        subject="subject",
        dimensions=tuple(
            Dimension(name, CategoricalHierarchy(name), "value", "value") for name in ("a", "b")
        ),
        measures=(Measure("x", "sum"), Measure(None, "subjects")),
        protection=Protection(k=3),
        totals=True,
    )


@pytest.fixture(params=[1, 2], ids=["one model", "two models in threads"])
def threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Bounds solved by one HiGHS model, or by two side by side in threads (forced even for
    this small table); complements by the greedy method, whose audit rounds report too."""
    monkeypatch.setattr(exact, "MAX_SIZE", 0)
    monkeypatch.setattr(solver, "THREADS", request.param)
    monkeypatch.setattr(solver, "THREADS_FROM", 0)
    return int(request.param)


def test_the_audit_reports_cells_done_while_it_solves(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.setattr(ticker, "REPORT_EVERY", 0.0)
    seen: list[str] = []
    release = run_release(_table(), _plan(), seen.append)
    assert release.counts()["suppressed"] > 0
    audited = [m for m in seen if m.startswith("auditing: ")]
    assert audited, seen
    done, total = audited[-1].removeprefix("auditing: ").removesuffix(" cells").split("/")
    assert 0 < int(done) <= int(total)
    assert any(m.startswith("checking: ") for m in seen)


def test_a_caller_can_stop_the_audit_from_its_progress_callback(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.setattr(ticker, "REPORT_EVERY", 0.0)

    def progress(message: str) -> None:
        if message.startswith(("auditing: ", "checking: ")):
            raise Stop(message)

    with pytest.raises(Stop):
        run_release(_table(), _plan(), progress)


def test_the_exact_method_reports_its_rounds_and_can_be_stopped() -> None:
    seen: list[str] = []
    release = run_release(_table(), _plan(), seen.append)
    assert release.counts()["complements_method"].startswith("exact")
    assert any(m.startswith("choosing complements: round 1") for m in seen), seen

    def progress(message: str) -> None:
        if message.startswith("choosing complements: round 2"):
            raise Stop(message)

    with pytest.raises(Stop):
        run_release(_table(), _plan(), progress)


def test_the_greedy_methods_last_pass_reports_and_can_be_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass that publishes complements again reports at its LPs too (the witnesses it
    finds, then the complements it tries), so a caller can stop it there."""
    monkeypatch.setattr(exact, "MAX_SIZE", 0)
    monkeypatch.setattr(ticker, "REPORT_EVERY", 0.0)
    seen: list[str] = []
    release = run_release(_table(), _plan(), seen.append)
    assert release.counts()["complements_method"].startswith("greedy")
    assert any(m.startswith("finding witnesses: ") for m in seen), seen
    tried = [m for m in seen if m.startswith("trying complements again: ")]
    assert tried, seen
    done, total = tried[-1].removeprefix("trying complements again: ").split(" ")[0].split("/")
    assert 0 <= int(done) <= int(total)

    def progress(message: str) -> None:
        if message.startswith("trying complements again: "):
            raise Stop(message)

    with pytest.raises(Stop):
        run_release(_table(), _plan(), progress)

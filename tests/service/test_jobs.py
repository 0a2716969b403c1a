"""Jobs: a crash between writing the files and committing leaves nothing downloadable and is
recovered on restart; releases expire after their retention (files deleted, record kept)."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app as cli
from service.config import Settings, get_settings
from service.db import utcnow
from service.extracts import files, jobs, upkeep
from service.extracts.models import Extract
from tests.service.conftest import LOOPBACK
from tests.service.journey import REQUEST, make_agreement, request_and_wait, wait_for


class Crash(BaseException):
    """The process dying: nothing after the fault runs, not even the job's error handling."""


@pytest.fixture
def setup(client: TestClient, admin: dict[str, str], make_dataset, make_partner) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dataset, partner = make_dataset(), make_partner("Partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"])
    return {"headers": partner["headers"], "agreement_id": agreement["id"]}


def _release_files(settings: Settings, extract_id: str) -> list[Path]:
    return sorted((settings.data_dir / "releases").glob(f"{extract_id}.*"))


def _crash_before_commit(
    app: FastAPI, client: TestClient, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> str:
    """Request an extract whose job dies after writing its files, before committing."""

    def crash(*args: Any) -> None:
        raise Crash

    monkeypatch.setattr(jobs, "commit_release", crash)
    # The process is dead: its worker loop does not see the job end either.
    monkeypatch.setattr(upkeep, "recover", lambda *args: (0, 0))
    url = f"/agreements/{setup['agreement_id']}/extracts"
    extract_id: str = client.post(url, json=REQUEST, headers=setup["headers"]).json()["id"]
    deadline = time.monotonic() + 10
    while (app.state.pool.in_flight or not _release_files(app.state.settings, extract_id)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    app.state.pool.stop()
    monkeypatch.undo()
    return extract_id


@contextmanager
def restarted(settings: Settings) -> Iterator[TestClient]:
    """The service started again on the same database, files and keys."""
    again = create_app(settings)
    try:
        with TestClient(again, client=LOOPBACK) as client:
            yield client
    finally:
        again.state.engine.dispose()


def test_a_crash_before_commit_leaves_nothing_downloadable_and_the_job_is_retried(
    app: FastAPI,
    client: TestClient,
    setup: dict[str, Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = setup["headers"]
    extract_id = _crash_before_commit(app, client, setup, monkeypatch)
    assert len(_release_files(settings, extract_id)) == 3  # written, never committed
    stuck = client.get(f"/extracts/{extract_id}", headers=headers).json()
    assert (stuck["status"], stuck["formats"]) == ("running", [])
    for suffix in ("/download", "/download?format=parquet", "/manifest"):
        response = client.get(f"/extracts/{extract_id}{suffix}", headers=headers)
        assert (response.status_code, response.json()["error"]) == (409, "not_ready")
    with app.state.sessionmaker() as session:
        extract = session.get(Extract, uuid.UUID(extract_id))
        assert extract is not None
        assert (extract.files, extract.manifest) == ({}, None)  # no key: the files are unreadable

    with restarted(settings) as again:
        done = wait_for(again, headers, extract_id, ("succeeded", "failed"))
        assert (done["status"], done["attempts"]) == ("succeeded", 2)
        assert again.get(f"/extracts/{extract_id}/download", headers=headers).status_code == 200


def test_a_crash_on_the_last_attempt_marks_the_job_failed(
    app: FastAPI,
    client: TestClient,
    setup: dict[str, Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extract_id = _crash_before_commit(app, client, setup, monkeypatch)
    with restarted(settings.model_copy(update={"job_attempts": 1})) as again:
        failed = again.get(f"/extracts/{extract_id}", headers=setup["headers"]).json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "interrupted")
    assert _release_files(settings, extract_id) == []


def test_releases_expire_after_retention_and_the_record_stays(
    app: FastAPI,
    client: TestClient,
    setup: dict[str, Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = setup["headers"]
    done = request_and_wait(client, headers, setup["agreement_id"], REQUEST)
    expected = utcnow() + datetime.timedelta(days=30)
    assert abs(datetime.datetime.fromisoformat(done["expires_at"]) - expected).total_seconds() < 60
    with app.state.sessionmaker() as session:
        extract = session.get(Extract, uuid.UUID(done["id"]))
        assert extract is not None
        extract.expires_at = utcnow() - datetime.timedelta(seconds=1)
        session.commit()
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("DATA_DIR", str(settings.data_dir)),
        ("KEYS_DIR", str(settings.keys_dir)),
    ):
        monkeypatch.setenv(f"PARTAGE_{name}", value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["releases", "expire"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "1 release(s) expired" in result.output
    assert _release_files(settings, done["id"]) == []
    expired = client.get(f"/extracts/{done['id']}", headers=headers).json()
    assert (expired["status"], expired["formats"]) == ("expired", [])
    gone = client.get(f"/extracts/{done['id']}/download", headers=headers)
    assert (gone.status_code, gone.json()["error"]) == (410, "gone")
    assert client.get(f"/extracts/{done['id']}/manifest", headers=headers).status_code == 200


def test_a_job_past_its_time_limit_fails_and_frees_the_queue(
    app: FastAPI, client: TestClient, setup: dict[str, Any]
) -> None:
    """A release still being protected after ``job_time_limit_seconds`` fails with
    ``time_limit`` and the reason; the partner's next request runs."""
    settings = app.state.pool.runtime.settings
    limit = settings.job_time_limit_seconds
    settings.job_time_limit_seconds = 1e-9
    try:
        failed = request_and_wait(client, setup["headers"], setup["agreement_id"], REQUEST)
    finally:
        settings.job_time_limit_seconds = limit
    assert failed["status"] == "failed", failed
    assert failed["failure_code"] == "time_limit", failed
    assert "no totals" in failed["failure"]
    done = request_and_wait(client, setup["headers"], setup["agreement_id"], REQUEST)
    assert done["status"] == "succeeded", done


@pytest.mark.parametrize("when", ["while_protecting", "before_commit"])
def test_an_agreement_revoked_during_its_job_releases_nothing(
    app: FastAPI,
    client: TestClient,
    setup: dict[str, Any],
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """Revoked while the engine works (its next progress report stops it) or after the files
    are written and before the commit (checked again there, the agreement's row locked): the
    job fails with ``agreement_revoked``, nothing is downloadable and no file stays."""
    started, revoked = threading.Event(), threading.Event()
    target = "run_release" if when == "while_protecting" else "commit_release"
    real = getattr(jobs, target)

    def paused(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert revoked.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, target, paused)
    commits: list[object] = []
    if when == "while_protecting":
        commit = jobs.commit_release
        monkeypatch.setattr(jobs, "commit_release", lambda *a: commits.append(a) or commit(*a))
    url = f"/agreements/{setup['agreement_id']}"
    extract_id = client.post(f"{url}/extracts", json=REQUEST, headers=setup["headers"]).json()["id"]
    assert started.wait(10)
    assert client.post(f"{url}/revoke", headers=admin).status_code == 200
    revoked.set()
    done = wait_for(client, setup["headers"], extract_id, ("succeeded", "failed"))
    assert (done["status"], done["failure_code"]) == ("failed", "agreement_revoked"), done
    download = client.get(f"/extracts/{extract_id}/download", headers=setup["headers"])
    assert download.status_code == 409
    assert _release_files(app.state.settings, extract_id) == []
    assert commits == [], "the engine's progress reports stop a job whose agreement was revoked"


def test_a_release_made_before_a_revocation_stays_downloadable_until_it_expires(
    app: FastAPI, client: TestClient, setup: dict[str, Any], admin: dict[str, str]
) -> None:
    # Made once, the partner may already hold it (DESIGN: downloadable until it expires); a
    # new request under the revoked agreement is denied.
    headers = setup["headers"]
    done = request_and_wait(client, headers, setup["agreement_id"], REQUEST)
    assert done["status"] == "succeeded", done
    url = f"/agreements/{setup['agreement_id']}"
    assert client.post(f"{url}/revoke", headers=admin).status_code == 200
    assert client.get(f"/extracts/{done['id']}/download", headers=headers).status_code == 200
    assert client.post(f"{url}/extracts", json=REQUEST, headers=headers).status_code == 403
    upkeep.expire_due(app.state.pool.runtime, utcnow() + datetime.timedelta(days=31))
    assert client.get(f"/extracts/{done['id']}/download", headers=headers).status_code == 410


def test_a_job_whose_failure_cannot_be_recorded_is_not_left_running(
    client: TestClient, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit fails, then so does recording the failure (the database busy or gone for a
    moment): the row stayed `running` until the service restarted, and as one job per partner
    runs at a time, the partner got nothing more. The worker loop now takes it as interrupted:
    queued again, and the next attempt releases."""
    faults = {"commit_release": 1, "mark_failed": 1}

    def failing_once(name: str) -> Any:
        real = getattr(jobs, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if faults[name]:
                faults[name] -= 1
                raise OperationalError("UPDATE audit_head", {}, Exception("database is locked"))
            return real(*args, **kwargs)

        return call

    for name in faults:
        monkeypatch.setattr(jobs, name, failing_once(name))
    done = request_and_wait(client, setup["headers"], setup["agreement_id"], REQUEST)
    assert faults == {"commit_release": 0, "mark_failed": 0}
    assert (done["status"], done["attempts"]) == ("succeeded", 2), done


def test_stopping_the_service_puts_its_running_jobs_back_in_the_queue(
    app: FastAPI,
    client: TestClient,
    setup: dict[str, Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM (the app's shutdown) waited for every running job to finish, up to the job time
    limit (15 minutes), serving nothing meanwhile, so a supervisor killed it and the attempt was
    lost. The job now stops at its next progress report and is queued again, its attempt given
    back; the restarted service releases it."""
    started, finished = threading.Event(), threading.Event()

    def protecting(source: Any, plan: Any, report: Any, *args: Any, **kwargs: Any) -> Any:
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            report("checking: 1/2 cells")
            time.sleep(0.02)
        finished.set()
        raise AssertionError("the job was not stopped")

    monkeypatch.setattr(jobs, "run_release", protecting)
    url = f"/agreements/{setup['agreement_id']}/extracts"
    extract_id = client.post(url, json=REQUEST, headers=setup["headers"]).json()["id"]
    assert started.wait(10)
    begun = time.monotonic()
    app.state.pool.stop()
    assert time.monotonic() - begun < 5
    assert not finished.is_set()
    stopped = client.get(f"/extracts/{extract_id}", headers=setup["headers"]).json()
    assert (stopped["status"], stopped["attempts"]) == ("queued", 0), stopped
    assert "stopped" in stopped["progress"]
    assert _release_files(settings, extract_id) == []
    monkeypatch.undo()
    with restarted(settings) as again:
        done = wait_for(again, setup["headers"], extract_id, ("succeeded", "failed"))
        assert (done["status"], done["attempts"]) == ("succeeded", 1), done


def test_a_download_racing_the_expiry_is_410_and_a_broken_file_a_json_error(
    app: FastAPI, client: TestClient, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row read succeeded, then the expiry sweep deleted the file before it was read: a
    bare 500. Now 410 as for any expired release; a stored file that does not decrypt (swapped
    for another release's, or damaged) is a JSON 500 naming the release, not a bare one."""
    headers = setup["headers"]
    done = request_and_wait(client, headers, setup["agreement_id"], REQUEST)
    read = files.read

    def expired_meanwhile(*args: Any) -> bytes:
        upkeep.expire_due(app.state.pool.runtime, utcnow() + datetime.timedelta(days=31))
        return read(*args)

    monkeypatch.setattr(files, "read", expired_meanwhile)
    gone = client.get(f"/extracts/{done['id']}/download", headers=headers)
    assert (gone.status_code, gone.json()["error"]) == (410, "gone")
    monkeypatch.undo()

    assert _release_files(app.state.settings, done["id"]) == []  # expired: deleted
    other = request_and_wait(client, headers, setup["agreement_id"], {**REQUEST, "totals": False})
    third = request_and_wait(
        client, headers, setup["agreement_id"], {**REQUEST, "measures": ["subjects"]}
    )
    # The CSV of one release of this partner in place of another's.
    theirs = app.state.settings.data_dir / "releases" / f"{third['id']}.csv.bin"
    theirs.replace(app.state.settings.data_dir / "releases" / f"{other['id']}.csv.bin")
    with TestClient(app, client=LOOPBACK, raise_server_exceptions=False) as loose:
        broken = loose.get(f"/extracts/{other['id']}/download", headers=headers)
    assert broken.status_code == 500
    assert broken.json()["error"] == "storage"
    assert other["id"] in broken.json()["detail"]


def test_release_files_left_by_an_interrupted_expiry_are_deleted_by_the_next_sweep(
    app: FastAPI,
    client: TestClient,
    setup: dict[str, Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sweep commits the expiry, then deletes the files: a deletion that failed (or a crash
    in between) left the encrypted files on disk for good, the row no longer due."""
    done = request_and_wait(client, setup["headers"], setup["agreement_id"], REQUEST)
    live = request_and_wait(
        client, setup["headers"], setup["agreement_id"], {**REQUEST, "totals": False}
    )
    later = utcnow() + datetime.timedelta(days=31)
    with app.state.sessionmaker() as session:
        session.get_one(Extract, uuid.UUID(live["id"])).expires_at = later + datetime.timedelta(
            days=1
        )
        session.commit()

    def crash(*args: Any) -> None:
        raise OSError("the disk went away")

    monkeypatch.setattr(files, "delete", crash)
    with pytest.raises(OSError):
        upkeep.expire_due(app.state.pool.runtime, later)
    monkeypatch.undo()
    assert len(_release_files(settings, done["id"])) == 3
    assert upkeep.expire_due(app.state.pool.runtime, later) == 0
    assert _release_files(settings, done["id"]) == []
    assert len(_release_files(settings, live["id"])) == 3


def test_a_commit_that_took_effect_though_it_raised_keeps_its_files(
    client: TestClient, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dropped as the commit was acknowledged: the release is committed, yet
    the job's error path deleted its files first (then saw the row was no longer running), so
    the release was succeeded and could not be downloaded."""
    commit = jobs.commit_release

    def acknowledgement_lost(*args: Any) -> None:
        commit(*args)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(jobs, "commit_release", acknowledgement_lost)
    done = request_and_wait(client, setup["headers"], setup["agreement_id"], REQUEST)
    assert done["status"] == "succeeded", done
    download = client.get(f"/extracts/{done['id']}/download", headers=setup["headers"])
    assert download.status_code == 200, download.text

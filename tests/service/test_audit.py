"""The audit log: events of every security-relevant action, a hash chain that names its first
broken entry, signed heads, filters and pages, and appends that never fork under concurrency."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from service.audit import service as audit
from service.cli import app as cli
from service.config import Settings
from service.extracts import jobs, upkeep
from tests.service.journey import REQUEST, make_agreement, request_and_wait, wait_for


@pytest.fixture
def journey(
    client: TestClient, admin: dict[str, str], make_dataset, make_partner
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dataset, partner = make_dataset(), make_partner("Partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"])
    headers, agreement_id = partner["headers"], agreement["id"]
    extract = request_and_wait(client, headers, agreement_id, REQUEST)
    client.get(f"/extracts/{extract['id']}/download", headers=headers)
    client.post(
        f"/agreements/{agreement_id}/decisions",
        json={"group_by": {"age": "value"}},
        headers=headers,
    )
    for action in ("suspend", "resume", "revoke"):
        client.post(f"/agreements/{agreement_id}/{action}", headers=admin)
    client.delete(f"/datasets/{dataset['id']}", headers=admin)
    return {"partner": partner, "agreement": agreement, "extract": extract, "dataset": dataset}


def _all(client: TestClient, admin: dict[str, str], **filters: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get("/audit", params={**filters, "after": after}, headers=admin).json()
        items += page["items"]
        if page["next_after"] is None:
            return items
        after = page["next_after"]


def test_every_security_relevant_action_is_recorded(
    client: TestClient, admin: dict[str, str], journey: dict[str, Any]
) -> None:
    actions = [event["action"] for event in _all(client, admin)]
    for expected in (
        "token.issued",
        "partner.created",
        "dataset.uploaded",
        "agreement.created",
        "extract.requested",
        "release.produced",
        "release.downloaded",
        "decision.denied",
        "agreement.suspended",
        "agreement.resumed",
        "agreement.revoked",
        "dataset.deleted",
    ):
        assert expected in actions, expected
    extract = f"extract:{journey['extract']['id']}"
    on_extract = [event["action"] for event in _all(client, admin, object=extract)]
    assert on_extract == ["extract.requested", "release.produced", "release.downloaded"]
    partner_client = journey["partner"]["client_id"]
    by_partner = {event["action"] for event in _all(client, admin, actor=partner_client)}
    assert by_partner == {
        "token.issued",
        "extract.requested",
        "release.downloaded",
        "decision.denied",
    }
    first = client.get("/audit", params={"limit": 2}, headers=admin).json()
    assert [event["seq"] for event in first["items"]] == [1, 2]
    assert first["next_after"] == 2
    assert first["items"][1]["prev_hash"] == first["items"][0]["hash"]
    assert client.get("/audit", headers=journey["partner"]["headers"]).status_code == 403


def test_flipping_one_byte_is_found_and_named(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    journey: dict[str, Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert client.get("/audit/verify", headers=admin).json()["intact"] is True
    monkeypatch.setenv("PARTAGE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PARTAGE_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("PARTAGE_DATA_DIR", str(settings.data_dir))
    from service.config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(cli, ["audit-log", "sign"]).exit_code == 0
    intact = runner.invoke(cli, ["audit-log", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "1 signed head(s) verified" in intact.output

    with app.state.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_event SET actor = 'ptg_' || substr(actor, 5) || 'x' WHERE seq = 4")
        )
    report = client.get("/audit/verify", headers=admin).json()
    assert (report["intact"], report["broken_at"]) == (False, 4)
    assert "altered" in report["problem"]
    broken = runner.invoke(cli, ["audit-log", "verify"])
    get_settings.cache_clear()
    assert broken.exit_code == 1
    assert "BROKEN at entry 4" in broken.output


def test_removed_entries_and_forged_head_signature_are_found(
    app: FastAPI, client: TestClient, admin: dict[str, str], journey: dict[str, Any]
) -> None:
    runtime = app.state.pool.runtime
    signed = upkeep.sign_audit_head(runtime)
    assert signed is not None
    with app.state.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_signature SET signature = :forged"), {"forged": "A" * 86}
        )
    report = client.get("/audit/verify", headers=admin).json()
    assert (report["broken_at"], report["intact"]) == (signed, False)
    with app.state.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_signature"))
        last = connection.execute(text("SELECT max(seq) FROM audit_event")).scalar_one()
        connection.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": last})
    report = client.get("/audit/verify", headers=admin).json()
    assert report["broken_at"] == last
    assert "entries removed" in report["problem"]


def test_concurrent_appends_never_fork_the_chain(app: FastAPI, admin: dict[str, str]) -> None:
    errors: list[BaseException] = []

    def appender(worker: int) -> None:
        try:
            for step in range(10):
                with app.state.sessionmaker() as session:
                    audit.append(session, f"worker{worker}", "test.append", f"step:{step}")
                    session.commit()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.state.sessionmaker() as session:
        report = audit.verify_chain(session, app.state.signing_keys)
        assert report.intact, report.problem
        assert report.entries >= 60


def test_two_releases_committed_at_once_each_get_one_entry_in_one_chain(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Any,
    make_partner: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two partners' jobs reach their commit together (two workers): each release has its
    `release.produced` entry, and the chain does not fork."""
    dataset = make_dataset()
    partners = [make_partner(name) for name in ("First", "Second")]
    agreements = [make_agreement(client, admin, p["id"], dataset["id"]) for p in partners]
    together = threading.Barrier(2, timeout=10)
    commit = jobs.commit_release

    def at_once(*args: Any) -> None:
        together.wait()
        commit(*args)

    monkeypatch.setattr(jobs, "commit_release", at_once)
    ids = [
        client.post(
            f"/agreements/{agreement['id']}/extracts", json=REQUEST, headers=partner["headers"]
        ).json()["id"]
        for partner, agreement in zip(partners, agreements, strict=True)
    ]
    for partner, extract_id in zip(partners, ids, strict=True):
        assert (
            wait_for(client, partner["headers"], extract_id, ("succeeded", "failed"))["status"]
            == "succeeded"
        )
    for extract_id in ids:
        events = _all(client, admin, object=f"extract:{extract_id}")
        assert [event["action"] for event in events] == ["extract.requested", "release.produced"]
    assert client.get("/audit/verify", headers=admin).json()["intact"] is True

"""``partage keys rotate-storage`` run as the CLI runs it, against the service's own database and
directories: every wrapped key is re-wrapped in one transaction, then the old keys are retired,
and every live release, dataset and pseudonym key still works; a key that cannot be re-wrapped
changes nothing."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner, Result

from service.agreements.models import Agreement
from service.cli import app as cli
from service.config import Settings, get_settings
from service.datasets.models import Dataset
from service.extracts.models import RUNNING, Extract
from tests.service.journey import REQUEST, make_agreement, request_and_wait
from tests.service.test_microdata_agreements import (
    MICRODATA,
    POLICY,
    download,
    microdata_agreement,
    people,
)

FORMATS = ("csv", "json", "parquet")


def rotate_storage(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Result:
    """The CLI command, in this test's database, keys and data directories."""
    monkeypatch.setenv("PARTAGE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PARTAGE_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("PARTAGE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, ["keys", "rotate-storage"])
    finally:
        get_settings.cache_clear()


def storage_kids(settings: Settings) -> set[str]:
    return {path.stem for path in (settings.keys_dir / "storage").glob("*.json")}


def key_ids_in_database(app: FastAPI) -> dict[str, str | None]:
    """Every wrapped key's key id, by what it wraps."""
    with app.state.sessionmaker() as session:
        found: dict[str, str | None] = {}
        for dataset in session.scalars(select(Dataset)):
            found[f"dataset:{dataset.id}"] = dataset.key_id
        for agreement in session.scalars(select(Agreement).where(Agreement.kind == "microdata")):
            found[f"pseudonym:{agreement.id}"] = agreement.pseudonym_key_id
        for extract in session.scalars(select(Extract)):
            for fmt, record in extract.files.items():
                found[f"release:{extract.id}.{fmt}"] = record.get("key_id")
        return found


def fetch(client: TestClient, headers: dict[str, str], extract_id: str) -> dict[str, bytes]:
    """Every format of a release and its manifest, as a partner downloads them."""
    fetched = {}
    for fmt in FORMATS:
        response = client.get(f"/extracts/{extract_id}/download?format={fmt}", headers=headers)
        if response.status_code != 404:  # a format the agreement does not produce
            assert response.status_code == 200, response.text
            fetched[fmt] = response.content
    manifest = client.get(f"/extracts/{extract_id}/manifest", headers=headers)
    assert manifest.status_code == 200, manifest.text
    fetched["manifest"] = manifest.content
    return fetched


@pytest.fixture
def releases(
    client: TestClient,
    admin: dict[str, str],
    make_dataset: Callable[..., dict[str, Any]],
    make_partner: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """An aggregate release and a microdata release, both succeeded and not expired."""
    payments = make_dataset()
    office = make_partner("Office")
    aggregate = make_agreement(client, admin, office["id"], payments["id"])
    produced = request_and_wait(client, office["headers"], aggregate["id"], REQUEST)
    assert produced["status"] == "succeeded", produced

    content = people().to_csv(index=False).encode()
    registered = client.post(
        "/datasets",
        data={"name": "people", "policy": json.dumps(POLICY)},
        files={"file": ("people.csv", content, "text/csv")},
        headers=admin,
    )
    assert registered.status_code == 201, registered.text
    lab = make_partner("Lab")
    agreement = microdata_agreement(client, admin, lab["id"], registered.json()["id"])
    microdata = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert microdata["status"] == "succeeded", microdata
    return {
        "aggregate": (office["headers"], produced),
        "microdata": (lab["headers"], microdata),
        "agreement": agreement,
    }


def test_rotation_rewraps_every_key_and_releases_still_download(
    client: TestClient,
    app: FastAPI,
    admin: dict[str, str],
    settings: Settings,
    releases: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extracts = {name: releases[name] for name in ("aggregate", "microdata")}
    before = {name: fetch(client, *extract) for name, extract in live(extracts).items()}
    release_files = sum(len(extract["formats"]) for _, extract in extracts.values())
    old_kids = storage_kids(settings)

    rotated = rotate_storage(settings, monkeypatch)

    assert rotated.exit_code == 0, rotated.output
    assert {name: fetch(client, *extract) for name, extract in live(extracts).items()} == before
    assert (
        f"2 dataset key(s), 1 pseudonym key(s), {release_files} release file key(s) re-wrapped"
        in rotated.output
    )
    assert f"{len(old_kids)} old key(s) retired" in rotated.output
    (new_kid,) = storage_kids(settings)
    assert new_kid not in old_kids and new_kid in rotated.output
    assert set(key_ids_in_database(app).values()) == {new_kid}

    # The pseudonym key survived too, and the agreement's version did not move: a new release
    # under the agreement has the same pseudonyms.
    headers, first = extracts["microdata"]
    agreement = client.get(f"/agreements/{releases['agreement']['id']}", headers=headers).json()
    assert agreement["version"] == 1
    again = request_and_wait(client, headers, releases["agreement"]["id"], MICRODATA)
    assert again["status"] == "succeeded", again
    first_pseudonyms = set(download(client, headers, first["id"])["person_id"])
    assert set(download(client, headers, again["id"])["person_id"]) == first_pseudonyms
    event = client.get("/audit", params={"action": "storage_key.rotated"}, headers=admin).json()
    assert event["items"][0]["details"] == {
        "key_id": new_kid,
        "datasets": 2,
        "pseudonym_keys": 1,
        "release_files": release_files,
    }


def live(extracts: dict[str, Any]) -> dict[str, tuple[dict[str, str], str]]:
    return {name: (headers, extract["id"]) for name, (headers, extract) in extracts.items()}


def test_a_key_that_does_not_unwrap_stops_the_rotation_and_changes_nothing(
    client: TestClient,
    app: FastAPI,
    settings: Settings,
    releases: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, extract = releases["aggregate"]
    csv = client.get(f"/extracts/{extract['id']}/download", headers=headers).content
    with app.state.sessionmaker() as session:
        stored = session.get_one(Extract, uuid.UUID(extract["id"]))
        record = stored.files["json"]
        tampered = bytearray(base64.b64decode(record["wrapped"]))
        tampered[-1] ^= 1
        record = {**record, "wrapped": base64.b64encode(bytes(tampered)).decode()}
        stored.files = {**stored.files, "json": record}
        session.commit()
    kids, key_ids = storage_kids(settings), key_ids_in_database(app)

    rotated = rotate_storage(settings, monkeypatch)

    assert rotated.exit_code == 2
    assert f"releases/{extract['id']}.json" in rotated.output
    assert "nothing re-wrapped" in rotated.output
    assert storage_kids(settings) == kids
    assert key_ids_in_database(app) == key_ids
    assert client.get(f"/extracts/{extract['id']}/download", headers=headers).content == csv


def test_old_keys_stay_while_a_release_job_runs(
    client: TestClient,
    app: FastAPI,
    settings: Settings,
    releases: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A job running during the rotation may have wrapped its files' keys with an old key and
    # commit them after the rotation: that key must not be deleted under it.
    _, extract = releases["aggregate"]
    with app.state.pool.lock:  # one of the pool's jobs, so its loop does not take it as stopped
        app.state.pool.in_flight.add(uuid.UUID(extract["id"]))
    with app.state.sessionmaker() as session:
        running = session.get_one(Extract, uuid.UUID(extract["id"]))
        running.status = RUNNING
        session.commit()
    old_kids = storage_kids(settings)

    rotated = rotate_storage(settings, monkeypatch)

    assert rotated.exit_code == 0, rotated.output
    assert "0 old key(s) retired" in rotated.output
    assert f"{len(old_kids)} kept" in rotated.output
    assert old_kids < storage_kids(settings)

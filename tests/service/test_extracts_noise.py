"""Consistent noise in the service: each dataset's secret (generated at registration, wrapped at
rest, never returned), and extracts that publish the same cell identically."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pandas as pd
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.datasets import service as datasets
from service.datasets.models import Dataset
from service.keys import StorageKeys
from tests.service.factories import RELEASE
from tests.service.journey import REQUEST, make_agreement, request_and_wait

NOISY = {
    **RELEASE,
    "protection": {
        **RELEASE["protection"],
        "noise": {"method": "cell_key", "max": 2, "variance": 1},
    },
}


def download(client: TestClient, headers: dict[str, str], extract: dict[str, Any]) -> pd.DataFrame:
    assert extract["status"] == "succeeded", extract
    body = client.get(f"/extracts/{extract['id']}/download", headers=headers).content
    return pd.read_csv(io.BytesIO(body), dtype={"departement": str, "card_country": str})


def secret_of(app: FastAPI, dataset_id: str) -> bytes:
    with app.state.sessionmaker() as session:
        secret = datasets.noise_secret(session, app.state.store, uuid.UUID(dataset_id))
        session.commit()
    return secret


def test_two_extracts_publish_the_same_cell_with_the_same_noise(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    make_dataset,  # type: ignore[no-untyped-def]
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    dataset, partner = make_dataset(), make_partner("Noisy partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"], release=NOISY)
    headers = partner["headers"]
    first = request_and_wait(client, headers, agreement["id"], REQUEST)
    finer = {**REQUEST, "group_by": {"departement": "departement", "card_country": "value"}}
    second = request_and_wait(client, headers, agreement["id"], finer)
    again = request_and_wait(client, headers, agreement["id"], REQUEST)
    by_departement = download(client, headers, first).set_index("departement")
    margins = download(client, headers, second)
    margins = margins[margins["card_country"] == "*"].set_index("departement")
    repeated = download(client, headers, again).set_index("departement")
    shared = [
        d
        for d in by_departement.index
        if by_departement.at[d, "status"] == "released" and margins.at[d, "status"] == "released"
    ]
    assert len(shared) >= 3
    for label in shared:
        # The département's margin in the finer extract has the same subjects: same cell key.
        assert by_departement.at[label, "subjects"] == margins.at[label, "subjects"]
        assert by_departement.at[label, "subjects"] == repeated.at[label, "subjects"]
    manifest = client.get(f"/extracts/{first['id']}/manifest", headers=headers).json()
    assert manifest["noise"]["max"] == 2 and manifest["audit"]["published_error"] == {
        "subjects": 2.0
    }
    secret = secret_of(app, dataset["id"])
    assert len(secret) == 32
    for text in (str(manifest), by_departement.to_csv(), str(dataset)):
        assert secret.hex() not in text
    shown = client.get(f"/datasets/{dataset['id']}", headers=admin).json()
    assert not {"noise_key_id", "wrapped_noise_secret", "noise_secret"} & set(shown)


def test_the_secret_is_wrapped_at_rest_created_lazily_and_survives_rotation(
    app: FastAPI,
    client: TestClient,
    admin: dict[str, str],
    make_dataset,  # type: ignore[no-untyped-def]
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    dataset = make_dataset()
    secret = secret_of(app, dataset["id"])
    assert secret_of(app, dataset["id"]) == secret
    with app.state.sessionmaker() as session:
        stored = session.get(Dataset, uuid.UUID(dataset["id"]))
        assert stored is not None and stored.wrapped_noise_secret is not None
        assert secret not in stored.wrapped_noise_secret
    keys = StorageKeys(app.state.settings.keys_dir)
    keys.add()
    with app.state.sessionmaker() as session:
        datasets.rewrap_all(session, app.state.store)
        session.commit()
    keys.retire_all_but_current()
    assert secret_of(app, dataset["id"]) == secret
    # A dataset registered before noise existed has no secret: its first noisy extract makes one.
    with app.state.sessionmaker() as session:
        session.execute(
            update(Dataset)
            .where(Dataset.id == uuid.UUID(dataset["id"]))
            .values(noise_key_id=None, wrapped_noise_secret=None)
        )
        session.commit()
    partner = make_partner("Late partner")
    agreement = make_agreement(client, admin, partner["id"], dataset["id"], release=NOISY)
    extract = request_and_wait(client, partner["headers"], agreement["id"], REQUEST)
    assert extract["status"] == "succeeded", extract
    created = secret_of(app, dataset["id"])
    assert created != secret and len(created) == 32

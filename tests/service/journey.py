"""Helpers for the partners' journey: an agreement to request under, and polling a job."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.service.factories import agreement_body

REQUEST: dict[str, Any] = {
    "group_by": {"departement": "departement"},
    "measures": ["subjects", "amount.sum"],
    "totals": True,
    "format": "csv",
}


def make_agreement(
    client: TestClient, admin: dict[str, str], partner_id: str, dataset_id: str, **changes: Any
) -> dict[str, Any]:
    response = client.post(
        "/agreements", json=agreement_body(partner_id, dataset_id, **changes), headers=admin
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(
    client: TestClient, headers: dict[str, str], extract_id: str, until: tuple[str, ...]
) -> dict[str, Any]:
    """Poll the extract until its status is one of ``until`` (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = client.get(f"/extracts/{extract_id}", headers=headers).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def request_and_wait(
    client: TestClient, headers: dict[str, str], agreement_id: str, request: dict[str, Any]
) -> dict[str, Any]:
    response = client.post(f"/agreements/{agreement_id}/extracts", json=request, headers=headers)
    assert response.status_code == 202, response.text
    return wait_for(client, headers, response.json()["id"], ("succeeded", "failed"))

"""Microdata agreements refuse at creation what Mondrian cannot split (times, plain text), and a
value its hierarchy cannot read fails the job naming the column and what was expected."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from tests.service.factories import agreement_body
from tests.service.journey import make_agreement, request_and_wait
from tests.service.test_microdata_agreements import (
    MICRODATA,
    POLICY,
    RELEASE,
    dataset,
    microdata_agreement,
    people,
)

__all__ = ["dataset"]  # the fixture, used by name


def test_mondrian_refuses_time_and_text_quasi_identifiers_at_creation_and_new_version(
    client: TestClient,
    admin: dict[str, str],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    """Mondrian splits numbers or a hierarchy table's codes: a time or plain text QI used to be
    accepted here, then every job failed. Now 422 naming the quasi-identifier; a column with no
    hierarchy that holds only numbers (stored as ``number``) is accepted and released."""
    data = people()
    data["visit"] = pd.date_range("2025-01-01", periods=len(data), freq="D").strftime("%Y-%m-%d")
    data["height"] = np.random.default_rng(3).integers(150, 200, len(data)).astype(str)
    columns = {**POLICY["dataset"]["columns"], "visit": {"type": "time"}, "height": {}}
    policy = {**POLICY, "dataset": {**POLICY["dataset"], "columns": columns}}
    registered = client.post(
        "/datasets",
        data={"name": "people", "policy": json.dumps(policy)},
        files={"file": ("people.csv", data.to_csv(index=False).encode(), "text/csv")},
        headers=admin,
    )
    assert registered.status_code == 201, registered.text
    dataset_id = registered.json()["id"]
    assert registered.json()["columns"]["height"] == "number"
    assert registered.json()["columns"]["sex"] == "text"
    lab = make_partner("Lab")
    mondrian = {**RELEASE, "algorithm": "mondrian", "protection": {"k": 5}, "sensitive": []}
    refused = [
        ({"visit": {}}, "visit"),
        ({"age": {}, "departement": {"hierarchy": "time"}}, "departement"),
        ({"age": {}, "sex": {}}, "sex"),
    ]
    for qis, column in refused:
        body = agreement_body(lab["id"], dataset_id, release={**mondrian, "quasi_identifiers": qis})
        response = client.post("/agreements", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == f"release.quasi_identifiers.{column}"
        assert response.json()["error"] == "mondrian_unsupported"
    accepted = {**mondrian, "quasi_identifiers": {"age": {}, "departement": {}, "height": {}}}
    agreement = make_agreement(client, admin, lab["id"], dataset_id, release=accepted, limits={})
    done = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert done["status"] == "succeeded", done
    update = agreement_body(
        lab["id"],
        dataset_id,
        version=1,
        release={**mondrian, "quasi_identifiers": {"age": {}, "visit": {}}},
        limits={},
    )
    del update["partner_id"], update["dataset_id"]
    response = client.put(f"/agreements/{agreement['id']}", json=update, headers=admin)
    assert (response.status_code, response.json()["field"]) == (
        422,
        "release.quasi_identifiers.visit",
    )


def test_a_malformed_time_fails_the_job_naming_the_column_and_what_was_expected(
    client: TestClient,
    admin: dict[str, str],
    dataset: dict[str, Any],
    make_partner: Callable[[str], dict[str, Any]],
) -> None:
    # `sex` read through the time hierarchy (a QI may name another hierarchy than its column's):
    # its values are no dates. The partner reads the column and what was expected, not values.
    lab = make_partner("Lab")
    qis = {"age": {}, "sex": {"hierarchy": "time"}}
    agreement = microdata_agreement(client, admin, lab["id"], dataset["id"], quasi_identifiers=qis)
    failed = request_and_wait(client, lab["headers"], agreement["id"], MICRODATA)
    assert (failed["status"], failed["failure_code"]) == ("failed", "malformed_value")
    assert "'sex'" in failed["failure"] and "a date for the time hierarchy" in failed["failure"]
    assert "numbers" not in failed["failure"] and "'F'" not in failed["failure"]
    events = client.get("/audit", params={"action": "release.failed"}, headers=admin).json()
    logged = events["items"][-1]["details"]["detail"]
    assert "column 'sex' holds 'F', which is not a date (YYYY-MM-DD" in logged

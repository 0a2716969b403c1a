"""The partners' journey over HTTP: token → decision → extract → poll → download → verify."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app as cli
from service.extracts.manifest import verify_release
from service.signatures import SignatureError
from tests.service.conftest import bearer, token_for
from tests.service.factories import POLICY, RELEASE, csv_bytes, dataset_form, payments_frame
from tests.service.journey import REQUEST, make_agreement, request_and_wait, wait_for


@pytest.fixture
def setup(client: TestClient, admin: dict[str, str], make_dataset, make_partner) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    dataset = make_dataset()
    first, second = make_partner("First partner"), make_partner("Second partner")
    agreement = make_agreement(client, admin, first["id"], dataset["id"])
    return {"dataset": dataset, "first": first, "second": second, "agreement": agreement}


def test_journey_decision_extract_download_and_verify(
    client: TestClient, setup: dict[str, Any], tmp_path: Path
) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    decision = client.post(f"/agreements/{agreement_id}/decisions", json=REQUEST, headers=partner)
    assert decision.status_code == 200, decision.text
    assert decision.json()["permit"] is True
    assert decision.json()["plan"]["dimensions"] == {"departement": "departement"}
    assert decision.json()["estimated_cells"] == 5  # 4 départements and their total

    accepted = client.post(f"/agreements/{agreement_id}/extracts", json=REQUEST, headers=partner)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    assert accepted.headers["Location"] == f"/extracts/{accepted.json()['id']}"
    done = wait_for(client, partner, accepted.json()["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    assert done["formats"] == ["csv", "json", "parquet"]
    extract_id = done["id"]

    csv = client.get(f"/extracts/{extract_id}/download", headers=partner)
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.BytesIO(csv.content), dtype=str)
    assert set(table["departement"]) == {"01", "2A", "69", "974", "*"}
    parquet = client.get(f"/extracts/{extract_id}/download?format=parquet", headers=partner)
    assert len(pd.read_parquet(io.BytesIO(parquet.content))) == len(table)

    manifest = client.get(f"/extracts/{extract_id}/manifest", headers=partner).json()
    assert manifest["agreement"] == {"id": agreement_id, "version": 1}
    assert manifest["dataset"]["fingerprint"] == setup["dataset"]["fingerprint"]
    assert manifest["plan"]["protection"]["k"] == 5
    assert set(manifest["outputs"]) == {"csv", "json", "parquet"}
    jwks = client.get("/.well-known/jwks.json").json()
    (tmp_path / "release.csv").write_bytes(csv.content)
    assert verify_release(manifest, jwks, tmp_path / "release.csv")[1] == "csv"
    (tmp_path / "release.parquet").write_bytes(parquet.content)
    assert verify_release(manifest, jwks, tmp_path / "release.parquet")[1] == "parquet"


def test_partage_verify_offline_and_tampering(
    client: TestClient, setup: dict[str, Any], tmp_path: Path
) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    extract = request_and_wait(client, partner, agreement_id, REQUEST)
    data = client.get(f"/extracts/{extract['id']}/download", headers=partner).content
    manifest = client.get(f"/extracts/{extract['id']}/manifest", headers=partner).json()
    paths = {name: tmp_path / name for name in ("manifest.json", "release.csv", "jwks.json")}
    paths["manifest.json"].write_text(json.dumps(manifest))
    paths["release.csv"].write_bytes(data)
    paths["jwks.json"].write_text(json.dumps(client.get("/.well-known/jwks.json").json()))
    arguments = [str(paths["manifest.json"]), str(paths["release.csv"])]
    arguments += ["--jwks", str(paths["jwks.json"])]
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", *arguments])
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output

    paths["release.csv"].write_bytes(data.replace(b",", b";", 1))
    changed = runner.invoke(cli, ["verify", *arguments])
    assert changed.exit_code == 1
    assert "none of the manifest's outputs" in changed.output

    paths["release.csv"].write_bytes(data)
    forged = {**manifest, "agreement": {**manifest["agreement"], "version": 9}}
    paths["manifest.json"].write_text(json.dumps(forged))
    assert runner.invoke(cli, ["verify", *arguments]).exit_code == 1
    with pytest.raises(SignatureError, match="does not match"):
        verify_release(forged, json.loads(paths["jwks.json"].read_text()), paths["release.csv"])


def test_denied_decision_lists_every_reason(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    request = {
        "group_by": {"departement": "commune", "date": "day"},
        "measures": ["amount.count"],
        "filters": {"age": {"in": ["30"]}},
        "format": "csv",
    }
    decision = client.post(f"/agreements/{agreement_id}/decisions", json=request, headers=partner)
    assert decision.status_code == 200
    reasons = {(r["code"], r["field"]) for r in decision.json()["reasons"]}
    assert decision.json()["permit"] is False
    assert reasons == {
        ("level_too_fine", "group_by.departement"),
        ("level_too_fine", "group_by.date"),
        ("measure_not_allowed", "measures[0]"),
        ("filter_not_allowed", "filters.age"),
    }
    refused = client.post(f"/agreements/{agreement_id}/extracts", json=request, headers=partner)
    assert refused.status_code == 403
    assert refused.json()["error"] == "denied"
    assert {(r["code"], r["field"]) for r in refused.json()["reasons"]} == reasons
    assert client.get("/extracts", headers=partner).json() == []
    denied = client.get("/audit", params={"action": "decision.denied"}, headers=admin).json()
    assert len(denied["items"]) == 2


def test_agreement_not_active_and_format_and_cells_limits(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    partner = setup["first"]
    expired = make_agreement(
        client,
        admin,
        partner["id"],
        setup["dataset"]["id"],
        valid_from="2020-01-01",
        valid_until="2020-12-31",
        release={
            **setup["agreement"]["release"],
            "formats": ["parquet"],
        },
        limits={"max_cells": 3},
    )
    decision = client.post(
        f"/agreements/{expired['id']}/decisions", json=REQUEST, headers=partner["headers"]
    ).json()
    assert [r["code"] for r in decision["reasons"]] == [
        "agreement_expired",
        "format_not_allowed",
        "too_many_cells",
    ]
    agreement_id = setup["agreement"]["id"]
    client.post(f"/agreements/{agreement_id}/suspend", headers=admin)
    suspended = client.post(
        f"/agreements/{agreement_id}/extracts", json=REQUEST, headers=partner["headers"]
    )
    assert suspended.status_code == 403
    assert [r["code"] for r in suspended.json()["reasons"]] == ["agreement_suspended"]


def test_monthly_quota_is_429_with_retry_after(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    partner = setup["first"]
    agreement = make_agreement(
        client, admin, partner["id"], setup["dataset"]["id"], limits={"extracts_per_month": 2}
    )
    url = f"/agreements/{agreement['id']}/extracts"
    for _ in range(2):
        assert client.post(url, json=REQUEST, headers=partner["headers"]).status_code == 202
    over = client.post(url, json=REQUEST, headers=partner["headers"])
    assert over.status_code == 429
    assert over.json()["field"] == "agreement.limits.extracts_per_month"
    assert 0 < int(over.headers["Retry-After"]) <= 31 * 86400
    decision = client.post(
        f"/agreements/{agreement['id']}/decisions", json=REQUEST, headers=partner["headers"]
    ).json()
    assert [r["code"] for r in decision["reasons"]] == ["quota_reached"]


def test_idempotency_key(client: TestClient, setup: dict[str, Any]) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    url = f"/agreements/{agreement_id}/extracts"
    keyed = {**partner, "Idempotency-Key": "monthly-2025-06"}
    first = client.post(url, json=REQUEST, headers=keyed)
    again = client.post(url, json=dict(reversed(list(REQUEST.items()))), headers=keyed)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    other = client.post(url, json={**REQUEST, "totals": False}, headers=keyed)
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"
    assert len(client.get("/extracts", headers=partner).json()) == 1
    unkeyed = client.post(url, json=REQUEST, headers=partner)
    assert unkeyed.json()["id"] != first.json()["id"]


def test_another_partners_agreement_and_extracts_are_404(
    client: TestClient, setup: dict[str, Any]
) -> None:
    first, second = setup["first"]["headers"], setup["second"]["headers"]
    agreement_id = setup["agreement"]["id"]
    extract = request_and_wait(client, first, agreement_id, REQUEST)
    for path in ("decisions", "extracts"):
        response = client.post(f"/agreements/{agreement_id}/{path}", json=REQUEST, headers=second)
        assert response.status_code == 404, path
    for suffix in ("", "/download", "/download?format=json", "/manifest"):
        response = client.get(f"/extracts/{extract['id']}{suffix}", headers=second)
        assert response.status_code == 404, suffix
        assert response.json()["error"] == "not_found"
    assert client.get("/extracts", headers=second).json() == []
    assert client.get(f"/extracts/{extract['id']}", headers=first).status_code == 200


def test_isolation_holds_through_idempotency_keys_filters_and_narrowed_scopes(
    client: TestClient, admin: dict[str, str], setup: dict[str, Any]
) -> None:
    first, second = setup["first"], setup["second"]
    theirs = make_agreement(client, admin, second["id"], setup["dataset"]["id"])
    key = {"Idempotency-Key": "monthly-report"}
    mine = client.post(
        f"/agreements/{setup['agreement']['id']}/extracts",
        json=REQUEST,
        headers={**first["headers"], **key},
    )
    assert mine.status_code == 202, mine.text
    # The other partner's same key and body, under its own agreement, is its own extract: a
    # key is the client's, never a way to replay (or probe) another partner's extract.
    other = client.post(
        f"/agreements/{theirs['id']}/extracts", json=REQUEST, headers={**second["headers"], **key}
    )
    assert other.status_code == 202, other.text
    assert other.json()["id"] != mine.json()["id"]
    assert other.json()["agreement_id"] == theirs["id"]
    foreign = client.post(
        f"/agreements/{setup['agreement']['id']}/extracts",
        json=REQUEST,
        headers={**second["headers"], **key},
    )
    assert foreign.status_code == 404
    listed = client.get(
        "/extracts", params={"agreement_id": setup["agreement"]["id"]}, headers=second["headers"]
    )
    assert listed.json() == []
    for path in ("/audit", "/audit/verify", "/datasets", "/partners"):
        assert client.get(path, headers=second["headers"]).status_code == 403, path
    # A token asked for with the read scope alone cannot request, even on its own agreement.
    reader = bearer(token_for(client, first["client_id"], first["client_secret"], "extracts:read"))
    for path in ("decisions", "extracts"):
        response = client.post(
            f"/agreements/{setup['agreement']['id']}/{path}", json=REQUEST, headers=reader
        )
        assert (response.status_code, response.json()["field"]) == (403, "scope"), path
    assert client.get(f"/extracts/{mine.json()['id']}", headers=reader).status_code == 200


def test_a_failure_quoting_values_of_the_data_names_only_the_column_to_the_partner(
    client: TestClient, admin: dict[str, str], make_partner
) -> None:  # type: ignore[no-untyped-def]
    # An ARX ladder may send a rare value to `*` below its top; `*` marks margins, so the job
    # fails, and its message quoted the raw values so generalized ('US') to the partner.
    columns = {**POLICY["dataset"]["columns"], "card_country": {"hierarchy": "countries"}}
    policy = {
        "dataset": {**POLICY["dataset"], "columns": columns},
        "hierarchies": {**POLICY["hierarchies"], "countries": "countries.csv"},
    }
    files = [
        ("file", ("d.csv", csv_bytes(payments_frame()))),
        ("hierarchy_files", ("countries.csv", b"DE;EU;*\nGB;EU;*\nUS;*;*\n")),
    ]
    registered = client.post(
        "/datasets", data=dataset_form(policy=policy), files=files, headers=admin
    )
    assert registered.status_code == 201, registered.text
    partner = make_partner("Partner")
    release = {**RELEASE, "dimensions": {"card_country": "level1"}, "protection": {"k": 2}}
    agreement = make_agreement(
        client, admin, partner["id"], registered.json()["id"], release=release
    )
    request = {"group_by": {"card_country": "level1"}, "measures": ["subjects"]}
    failed = request_and_wait(client, partner["headers"], agreement["id"], request)
    assert (failed["status"], failed["failure_code"]) == ("failed", "reserved_label")
    assert "'card_country'" in failed["failure"] and "US" not in failed["failure"]
    events = client.get("/audit", params={"action": "release.failed"}, headers=admin).json()
    assert "'US'" in events["items"][-1]["details"]["detail"]


def test_not_ready_failed_and_unproduced_format(
    client: TestClient, setup: dict[str, Any], app: Any
) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    dataset_file = app.state.settings.data_dir / "datasets" / f"{setup['dataset']['id']}.bin"
    dataset_file.unlink()
    failed = request_and_wait(client, partner, agreement_id, REQUEST)
    assert failed["status"] == "failed"
    assert failed["failure_code"] == "storage"
    assert "missing" in failed["failure"]
    response = client.get(f"/extracts/{failed['id']}/download", headers=partner)
    assert (response.status_code, response.json()["error"]) == (409, "failed")


def test_rate_limit_per_client_is_429_with_retry_after(
    client: TestClient, app: Any, setup: dict[str, Any]
) -> None:
    from service.ratelimit import RateLimiter

    app.state.limiter = RateLimiter(per_second=0.5, burst=3)
    partner, second = setup["first"]["headers"], setup["second"]["headers"]
    statuses = [client.get("/agreements", headers=partner).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/agreements", headers=partner)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert client.get("/agreements", headers=second).status_code == 200


def test_expired_token_is_401(client: TestClient, app: Any, setup: dict[str, Any]) -> None:
    import time

    from joserfc import jwt

    key = app.state.signing_keys.signing_key()
    now = int(time.time())
    claims = {
        "iss": app.state.settings.token_issuer,
        "sub": setup["first"]["client_id"],
        "iat": now - 1000,
        "exp": now - 100,
        "scope": "extracts:read extracts:request",
        "gen": 1,
    }
    token = jwt.encode({"alg": "Ed25519", "kid": key.kid}, claims, key, algorithms=["Ed25519"])
    response = client.get("/extracts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_loose_requests_are_422_not_coerced(client: TestClient, setup: dict[str, Any]) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    for change, field in (
        ({"measures": ["subjects"] * 10000}, "measures"),
        ({"filters": {"card_country": {"in": [1, True, None, [1]]}}}, "filters.card_country.in.1"),
        ({"totals": "yes"}, "totals"),
    ):
        for path in ("decisions", "extracts"):
            response = client.post(
                f"/agreements/{agreement_id}/{path}", json={**REQUEST, **change}, headers=partner
            )
            assert (response.status_code, response.json()["field"]) == (422, field), path


BAD_BOUNDS = ["garbage", "2025-13-45", "", "NaN", "2025-07-01\u0000", "2025-01-01' OR '1'='1"]


def test_a_range_bound_that_does_not_parse_is_422_naming_it(
    client: TestClient, setup: dict[str, Any]
) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    for value in BAD_BOUNDS:
        for bound in ({"from": value}, {"from": value[:7], "level": "month"}, {"to": value}):
            request = {**REQUEST, "filters": {"date": bound}}
            field = "filters.date.from" if "from" in bound else "filters.date.to"
            for path in ("decisions", "extracts"):
                response = client.post(
                    f"/agreements/{agreement_id}/{path}", json=request, headers=partner
                )
                assert response.status_code == 422, (value, path, response.text)
                assert response.json()["field"] == field
                assert response.json()["error"] == "invalid_filter"
    backwards = {**REQUEST, "filters": {"date": {"from": "2025-08-01", "to": "2025-06-30"}}}
    response = client.post(f"/agreements/{agreement_id}/extracts", json=backwards, headers=partner)
    assert (response.status_code, response.json()["field"]) == (422, "filters.date.from")
    assert "after" in response.json()["detail"]
    assert client.get("/extracts", headers=partner).json() == []


def test_a_time_range_finer_than_the_level_allowed_is_denied(
    client: TestClient, setup: dict[str, Any]
) -> None:
    partner, agreement_id = setup["first"]["headers"], setup["agreement"]["id"]
    hours = {"from": "2025-07-01T10:00:00", "to": "2025-07-01T12:00:00"}
    response = client.post(
        f"/agreements/{agreement_id}/decisions",
        json={**REQUEST, "filters": {"date": hours}},
        headers=partner,
    )
    assert (response.status_code, response.json()["field"]) == (422, "filters.date.from")
    days = {**REQUEST, "filters": {"date": {"from": "2025-07-01", "to": "2025-07-14"}}}
    decision = client.post(f"/agreements/{agreement_id}/decisions", json=days, headers=partner)
    assert decision.json()["permit"] is False
    (reason,) = decision.json()["reasons"]
    assert (reason["code"], reason["field"]) == ("level_too_fine", "filters.date.to")
    assert "last day of a month (e.g. 2025-07-31)" in reason["detail"]
    refused = client.post(f"/agreements/{agreement_id}/extracts", json=days, headers=partner)
    assert refused.status_code == 403
    summer = {**REQUEST, "filters": {"date": {"from": "2025-01-01", "to": "2025-03-31"}}}
    decision = client.post(f"/agreements/{agreement_id}/decisions", json=summer, headers=partner)
    assert decision.json()["permit"] is True, decision.text
    extract = request_and_wait(client, partner, agreement_id, summer)
    assert extract["status"] == "succeeded", extract

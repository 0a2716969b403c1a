"""``/partners``: registration, listing, secret rotation."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import token_for


def test_register_list_and_get_partners(client: TestClient, admin, make_partner) -> None:  # type: ignore[no-untyped-def]
    first = make_partner("Office de tourisme")
    make_partner("Agence de l'énergie")
    listed = client.get("/partners", headers=admin).json()
    assert [p["name"] for p in listed] == ["Office de tourisme", "Agence de l'énergie"]
    assert all("client_secret" not in p and "secret_hash" not in p for p in listed)
    one = client.get(f"/partners/{first['id']}", headers=admin).json()
    assert one["client_id"] == first["client_id"]


def test_duplicate_name_is_409_and_bad_body_is_422_naming_the_field(
    client: TestClient,
    admin,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    make_partner("Same")
    duplicate = client.post("/partners", json={"name": "Same"}, headers=admin)
    assert duplicate.status_code == 409
    assert duplicate.json()["field"] == "name"
    bad = client.post("/partners", json={"name": "X", "contact_email": "nope"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["field"] == "contact_email"
    assert bad.json()["error"] == "invalid_request"


def test_rotating_a_secret_invalidates_the_old_secret_and_its_tokens(
    client: TestClient,
    admin,
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    partner = make_partner("Rotating")
    old_headers = partner["headers"]
    assert client.get("/agreements", headers=old_headers).status_code in (200, 404)
    rotated = client.post(f"/partners/{partner['id']}/secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    assert new_secret != partner["client_secret"]
    stale = {
        "grant_type": "client_credentials",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
    }
    assert client.post("/oauth/token", data=stale).status_code in (400, 401)
    assert token_for(client, partner["client_id"], new_secret)


def test_unknown_partner_is_404(client: TestClient, admin) -> None:  # type: ignore[no-untyped-def]
    missing = "00000000-0000-0000-0000-000000000000"
    response = client.get(f"/partners/{missing}", headers=admin)
    assert response.status_code == 404
    assert client.get("/partners/not-a-uuid", headers=admin).json()["field"] == "partner_id"

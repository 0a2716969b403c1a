"""OAuth2 client credentials, JWT access tokens, key rotation and scope checks."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from service.config import Settings
from service.keys import SigningKeys
from tests.service.conftest import bearer, token_for


def test_token_is_a_short_lived_eddsa_jwt_verifiable_with_the_jwks(
    client: TestClient, admin_credentials: tuple[str, str], settings: Settings
) -> None:
    client_id, secret = admin_credentials
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.token_ttl_seconds == 900
    assert body["scope"] == "admin"
    jwks = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    claims = jwt.decode(body["access_token"], jwks, algorithms=["Ed25519"]).claims
    assert claims["sub"] == client_id
    assert claims["exp"] - claims["iat"] == 900
    assert "d" not in client.get("/.well-known/jwks.json").json()["keys"][0]


def test_http_basic_client_authentication(
    client: TestClient, admin_credentials: tuple[str, str]
) -> None:
    basic = base64.b64encode(":".join(admin_credentials).encode()).decode()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200


def test_wrong_secret_unknown_client_and_bad_grant_are_refused(
    client: TestClient, admin_credentials: tuple[str, str]
) -> None:
    client_id, _ = admin_credentials
    wrong = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"}
    response = client.post("/oauth/token", data=wrong)
    unknown = client.post("/oauth/token", data={**wrong, "client_id": "ptg_nobody"})
    # The same answer either way: the endpoint does not tell which client IDs exist.
    for refused in (response, unknown):
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
    assert unknown.json() == response.json()
    password = {**wrong, "grant_type": "password"}
    assert client.post("/oauth/token", data=password).json()["error"] == "unsupported_grant_type"


def _basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize(
    "raw",
    [b"\xe9:\xff", b"\xff", b"", b"nobody:secret", b"ptg_x\x00:y", b"\x00\x00:\x00"],
    ids=["latin-1", "no-colon", "empty", "unknown", "nul-id", "nul-all"],
)
def test_undecodable_or_wrong_basic_credentials_are_401_invalid_client(
    client: TestClient, raw: bytes
) -> None:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(raw)
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.json()["detail"]
    broken = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic not*base64"},
    )
    assert (broken.status_code, broken.json()["error"]) == (401, "invalid_client")


def test_a_nul_in_a_form_client_id_is_401_invalid_client(client: TestClient) -> None:
    form = {"grant_type": "client_credentials", "client_id": "ptg\x00x", "client_secret": "y"}
    response = client.post("/oauth/token", data=form)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_basic_and_form_credentials_together_are_refused(
    client: TestClient,
    admin_credentials: tuple[str, str],
    make_partner,  # type: ignore[no-untyped-def]
) -> None:
    partner = make_partner("Other client")
    form = {
        "grant_type": "client_credentials",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
    }
    basic = _basic(":".join(admin_credentials).encode())
    response = client.post("/oauth/token", data=form, headers=basic)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "one client authentication method" in response.json()["detail"]
    only_id = {"grant_type": "client_credentials", "client_id": admin_credentials[0]}
    response = client.post("/oauth/token", data=only_id, headers=basic)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_a_scope_the_client_lacks_is_refused(client: TestClient, make_partner) -> None:  # type: ignore[no-untyped-def]
    partner = make_partner("Tourism office")
    form = {
        "grant_type": "client_credentials",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
        "scope": "admin",
    }
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    narrowed = token_for(client, partner["client_id"], partner["client_secret"], "extracts:read")
    assert narrowed


def test_missing_malformed_and_forged_tokens_get_401(client: TestClient, admin) -> None:  # type: ignore[no-untyped-def]
    missing = client.get("/partners")
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert client.get("/partners", headers=bearer("not-a-jwt")).status_code == 401
    token = admin["Authorization"].removeprefix("Bearer ")
    header, payload, signature = token.split(".")
    forged_payload = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b'"admin"', b'"admix"')
    ).rstrip(b"=")
    forged = f"{header}.{forged_payload.decode()}.{signature}"
    assert client.get("/partners", headers=bearer(forged)).status_code == 401


def test_partner_gets_403_on_admin_routes(client: TestClient, make_partner) -> None:  # type: ignore[no-untyped-def]
    partner = make_partner("Energy agency")
    headers = partner["headers"]
    assert client.get("/partners", headers=headers).status_code == 403
    response = client.post("/partners", json={"name": "Sneaky"}, headers=headers)
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "this route needs the 'admin' scope",
        "field": "scope",
    }
    assert client.post(f"/partners/{partner['id']}/secret", headers=headers).status_code == 403


def test_rotated_signing_key_keeps_old_tokens_valid_until_they_expire(
    client: TestClient,
    admin,
    settings: Settings,  # type: ignore[no-untyped-def]
) -> None:
    keys = SigningKeys(settings.keys_dir, settings.token_ttl_seconds)
    old_kid = keys.signing_key().kid
    new_kid = keys.rotate()
    kids = {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {old_kid, new_kid}
    assert client.get("/partners", headers=admin).status_code == 200
    assert keys.signing_key().kid == new_kid


def test_signing_keys_past_their_grace_leave_the_jwks(settings: Settings) -> None:
    keys = SigningKeys(settings.keys_dir, token_ttl_seconds=0, publish_days=0)
    first = keys.rotate()
    second = keys.rotate()
    kids = {key["kid"] for key in keys.jwks()["keys"]}
    assert kids == {second}
    assert not (settings.keys_dir / "signing" / f"{first}.json").exists()


def test_a_retired_key_stops_verifying_tokens_but_stays_published(settings: Settings) -> None:
    keys = SigningKeys(settings.keys_dir, token_ttl_seconds=0, publish_days=30)
    first = keys.rotate()
    second = keys.rotate()
    assert {key.kid for key in keys.verification_keys().keys} == {second}
    assert {key["kid"] for key in keys.jwks()["keys"]} == {first, second}


@pytest.mark.parametrize("name", ["grant_type", "client_id", "client_secret", "scope"])
def test_a_parameter_sent_twice_is_400_naming_it_and_no_token_is_issued(
    client: TestClient,
    admin_credentials: tuple[str, str],
    make_partner,
    name: str,  # type: ignore[no-untyped-def]
) -> None:
    """RFC 6749 §3.2: each parameter once. The last value used to win, so a filter in front of
    the service reading the first (`grant_type=password`, another client's id) saw another
    request than the one checked."""
    partner = make_partner("Another client")
    client_id, secret = admin_credentials
    first = {
        "grant_type": "password",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
        "scope": "extracts:read",
    }
    pairs = [("grant_type", "client_credentials"), ("client_id", client_id)]
    pairs += [("client_secret", secret), ("scope", "admin")]
    body = "&".join(f"{key}={value}" for key, value in [(name, first[name]), *pairs])
    response = client.post(
        "/oauth/token",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] == name
    assert f"{name!r} is sent more than once" in response.json()["error_description"]


def test_token_errors_name_the_parameter_and_the_reason(
    client: TestClient, admin_credentials: tuple[str, str]
) -> None:
    client_id, secret = admin_credentials
    form = {"grant_type": "password", "client_id": client_id, "client_secret": secret}
    grant = client.post("/oauth/token", data=form)
    as_json = client.post("/oauth/token", json={**form, "grant_type": "client_credentials"})
    for response, sent in ((grant, "'password'"), (as_json, "none")):
        assert response.status_code == 400
        body = response.json()
        assert (body["error"], body["field"]) == ("unsupported_grant_type", "grant_type")
        assert body["error_description"] == body["detail"]
        assert "form body" in body["detail"] and body["detail"].endswith(f"has {sent}")
    scope = client.post(
        "/oauth/token", data={**form, "grant_type": "client_credentials", "scope": "root"}
    )
    assert (scope.status_code, scope.json()["field"]) == (400, "scope")
    assert scope.json()["error_description"]


def test_values_an_oauth_error_cannot_quote_are_named_without_quoting(
    client: TestClient,
) -> None:
    """RFC 6749 §5.2: an error description holds printable ASCII but `"` and `\\`."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    repeated = client.post("/oauth/token", content=b"a%5C=1&a%5C=2", headers=form)
    grant = client.post("/oauth/token", content=b"grant_type=caf%C3%A9", headers=form)
    for response, field in ((repeated, "a\\"), (grant, "grant_type")):
        assert response.status_code == 400, response.text
        assert response.json()["field"] == field
        assert "characters an OAuth error cannot quote" in response.json()["error_description"]

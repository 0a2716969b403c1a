"""Attempts around authentication: tokens not ours or not whole, clients disabled, deleted or
narrowed since the token was issued, and clients acting for no partner."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, OKPKey
from sqlalchemy import delete, update

from service.auth.models import PARTNER_SCOPES, SCOPE_EXTRACTS_READ, OAuthClient
from service.auth.service import create_client
from service.db import utcnow
from tests.service.conftest import bearer, token_for
from tests.service.factories import agreement_body
from tests.service.journey import REQUEST


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims(app: FastAPI, client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": app.state.settings.token_issuer,
        "sub": client_id,
        "iat": now,
        "exp": now + 600,
        "scope": "admin",
        "gen": 1,
        **changes,
    }
    return {name: value for name, value in claims.items() if value is not None}


def _ours(app: FastAPI, claims: dict[str, Any]) -> str:
    key = app.state.signing_keys.signing_key()
    header = {"alg": "Ed25519", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=["Ed25519"])


def _unsigned(app: FastAPI, claims: dict[str, Any]) -> str:
    header = {"alg": "none", "kid": app.state.signing_keys.signing_key().kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hmac_with_our_public_key(app: FastAPI, claims: dict[str, Any]) -> str:
    """Algorithm confusion: HS256 keyed with the public key anyone reads in the JWKS."""
    key = app.state.signing_keys.signing_key()
    public = key.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = {"alg": "HS256", "kid": key.kid}
    return jwt.encode(header, claims, OctKey.import_key(public), algorithms=["HS256"])


def _another_key_with_our_kid(app: FastAPI, claims: dict[str, Any]) -> str:
    theirs = OKPKey.import_key(Ed25519PrivateKey.generate())
    header = {"alg": "Ed25519", "kid": app.state.signing_keys.signing_key().kid}
    return jwt.encode(header, claims, theirs, algorithms=["Ed25519"])


def _another_key_embedded(app: FastAPI, claims: dict[str, Any]) -> str:
    """The signer's own key in the `jwk` header (CVE-2018-0114's shape)."""
    theirs = OKPKey.import_key(Ed25519PrivateKey.generate())
    header = {"alg": "Ed25519", "jwk": theirs.as_dict(private=False)}
    return jwt.encode(header, claims, theirs, algorithms=["Ed25519"])


FORGERS: list[Callable[[FastAPI, dict[str, Any]], str]] = [
    _unsigned,
    _hmac_with_our_public_key,
    _another_key_with_our_kid,
    _another_key_embedded,
]


@pytest.mark.parametrize("forge", FORGERS, ids=lambda forge: forge.__name__.strip("_"))
def test_a_token_not_signed_by_our_key_is_401(
    client: TestClient, app: FastAPI, admin_credentials: tuple[str, str], forge: Any
) -> None:
    token = forge(app, _claims(app, admin_credentials[0]))
    response = client.get("/partners", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


# Stands for an expiry a second before the test runs: a value computed at collection differs
# between the test workers when they collect a second apart (pytest-xdist refuses to run).
JUST_EXPIRED = "a second ago"


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "another-service"},
        {"exp": JUST_EXPIRED},
        {"exp": None},
        {"iss": None},
        {"sub": None},
        {"scope": None},
        {"gen": None},
        {"gen": 2},  # a generation the client has not reached
        {"gen": "1"},
        {"sub": "ptg_000000000000000000000000"},
    ],
    ids=repr,
)
def test_a_token_of_ours_with_a_claim_wrong_or_missing_is_401(
    client: TestClient, app: FastAPI, admin_credentials: tuple[str, str], changes: dict[str, Any]
) -> None:
    """Signed by our own key: the claims alone must carry the refusal."""
    if changes.get("exp") == JUST_EXPIRED:  # a second ago, as the test runs
        changes = {**changes, "exp": int(time.time()) - 1}
    claims = _claims(app, admin_credentials[0], **changes)
    response = client.get("/partners", headers=bearer(_ours(app, claims)))
    assert response.status_code == 401, response.text
    whole = bearer(_ours(app, _claims(app, admin_credentials[0])))
    assert client.get("/partners", headers=whole).status_code == 200


def _segments(header: Any, payload: Any = None) -> str:
    """A token of three segments, ``header`` and ``payload`` as JSON, a signature of nothing."""
    body = json.dumps(payload if payload is not None else {"sub": "x"}).encode()
    return f"{_b64(json.dumps(header).encode())}.{_b64(body)}.{_b64(b'sig')}"


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.b.c.d.e",
        "!!!.@@@.###",
        "a" * 200_000 + ".b.c",
        _segments({"alg": "Ed25519", "kid": ["x"]}),
        _segments({"alg": ["Ed25519"]}),
        _segments([1]),
        _segments(None),
        _segments({"alg": "Ed25519"}, [1]),
        _segments({"alg": "Ed25519", "crit": "b64"}),
        _segments({"alg": "Ed25519", "zip": "DEF"}),
        _segments({"alg": "dir", "enc": "A128GCM"}) + ".x.y",
        ".".join([_b64(b"\xff\xfe"), _b64(b"{}"), _b64(b"sig")]),  # a header not UTF-8
    ],
    ids=lambda token: token[:40],
)
def test_a_malformed_token_is_401_never_a_500(client: TestClient, token: str) -> None:
    response = client.get("/partners", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized" and response.json()["detail"]


def test_a_disabled_client_loses_its_tokens_and_gets_no_new_one(
    client: TestClient, app: FastAPI, admin: dict[str, str], make_partner: Any
) -> None:
    partner = make_partner("Disabled partner")
    assert client.get("/agreements", headers=partner["headers"]).status_code == 200
    with app.state.sessionmaker.begin() as session:
        session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == partner["client_id"])
            .values(disabled_at=utcnow())
        )
    response = client.get("/agreements", headers=partner["headers"])
    assert response.status_code == 401
    assert "disabled" in response.json()["detail"]
    form = {
        "grant_type": "client_credentials",
        "client_id": partner["client_id"],
        "client_secret": partner["client_secret"],
    }
    refused = client.post("/oauth/token", data=form)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")


def test_a_deleted_client_loses_its_tokens(client: TestClient, app: FastAPI) -> None:
    with app.state.sessionmaker() as session:
        record, secret = create_client(session, "short-lived admin", ("admin",))
        session.commit()
    headers = bearer(token_for(client, record.client_id, secret))
    assert client.get("/partners", headers=headers).status_code == 200
    with app.state.sessionmaker.begin() as session:
        session.execute(delete(OAuthClient).where(OAuthClient.client_id == record.client_id))
    assert client.get("/partners", headers=headers).status_code == 401


def test_a_token_never_carries_more_than_the_client_holds_now(
    client: TestClient, app: FastAPI, admin_credentials: tuple[str, str]
) -> None:
    """A client narrowed after its token was issued: the token's wider scope is ignored."""
    headers = bearer(token_for(client, *admin_credentials))
    with app.state.sessionmaker.begin() as session:
        session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == admin_credentials[0])
            .values(scope=SCOPE_EXTRACTS_READ)
        )
    response = client.get("/partners", headers=headers)
    assert (response.status_code, response.json()["field"]) == (403, "scope")


def test_a_partner_cannot_get_or_widen_to_a_scope_it_lacks(
    client: TestClient, make_partner: Any
) -> None:
    partner = make_partner("Greedy partner")
    for scope in ("admin", "extracts:read admin", "extracts:read\u00a0admin", "extracts:write"):
        form = {
            "grant_type": "client_credentials",
            "client_id": partner["client_id"],
            "client_secret": partner["client_secret"],
            "scope": scope,
        }
        response = client.post("/oauth/token", data=form)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_scope"), scope


def test_a_client_acting_for_no_partner_sees_no_partners_data(
    client: TestClient, app: FastAPI, admin: dict[str, str], make_dataset: Any, make_partner: Any
) -> None:
    """Partner scopes without a partner (`partage admin create-client --scope`): the partner
    filter holds nothing, never everything."""
    partner = make_partner("Real partner")
    agreement = client.post(
        "/agreements", json=agreement_body(partner["id"], make_dataset()["id"]), headers=admin
    ).json()
    extract = client.post(
        f"/agreements/{agreement['id']}/extracts", json=REQUEST, headers=partner["headers"]
    ).json()
    with app.state.sessionmaker() as session:
        record, secret = create_client(session, "partnerless", PARTNER_SCOPES)
        session.commit()
    headers = bearer(token_for(client, record.client_id, secret))
    assert client.get("/agreements", headers=headers).json() == []
    assert client.get("/extracts", headers=headers).json() == []
    for path in ("", "/versions", "/versions/1"):
        url = f"/agreements/{agreement['id']}{path}"
        assert client.get(url, headers=headers).status_code == 404
    for action in ("decisions", "extracts"):
        url = f"/agreements/{agreement['id']}/{action}"
        assert client.post(url, json=REQUEST, headers=headers).status_code == 404
    for suffix in ("", "/download", "/manifest"):
        url = f"/extracts/{extract['id']}{suffix}"
        assert client.get(url, headers=headers).status_code == 404


def test_the_jwks_never_publishes_a_private_key(client: TestClient, app: FastAPI) -> None:
    app.state.signing_keys.signing_key()
    app.state.signing_keys.rotate()
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 2
    assert all(set(key) <= {"kty", "crv", "x", "kid", "use", "alg"} for key in keys), keys

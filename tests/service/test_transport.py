"""Plain HTTP only from a loopback peer: judged from the connection, whatever ``Host`` says.

A remote client speaking plain HTTP to a service bound on a public address used to pass
authlib's check by sending ``Host: localhost`` (the check reads the URL Starlette builds from
that header), and bearer tokens were taken in plain HTTP from anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.auth.transport import is_loopback
from tests.service.conftest import bearer

REMOTE_PEERS = ["203.0.113.9", "::ffff:203.0.113.9", "2001:db8::5", "10.0.0.1", "testclient"]
LOOPBACK_PEERS = ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]
# What a client may claim in `Host`: loopback names, and the service's public name.
HOSTS = ["localhost", "127.0.0.1", "[::1]", "partage.example.org"]


@contextmanager
def connected(app: FastAPI, scheme: str, peer: str) -> Iterator[TestClient]:
    """A client whose TCP peer address is ``peer``, over ``scheme`` (https: TLS terminated by
    the ASGI server)."""
    with TestClient(app, base_url=f"{scheme}://partage.example.org", client=(peer, 40000)) as http:
        yield http


def form(credentials: tuple[str, str]) -> dict[str, str]:
    client_id, secret = credentials
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def token_responses(
    app: FastAPI, peer: str, credentials: tuple[str, str]
) -> Iterator[tuple[str, TestClient, httpx.Response]]:
    """Token requests in plain HTTP from ``peer``, one per name in ``Host``."""
    with connected(app, "http", peer) as http:
        for host in HOSTS:
            yield (
                host,
                http,
                http.post("/oauth/token", data=form(credentials), headers={"Host": host}),
            )


@pytest.mark.parametrize("peer", REMOTE_PEERS)
def test_plain_http_from_another_machine_is_refused_whatever_host_it_claims(
    app: FastAPI, admin_credentials: tuple[str, str], peer: str
) -> None:
    for host, _, response in token_responses(app, peer, admin_credentials):
        assert response.status_code == 400, (host, response.text)
        body = response.json()
        assert body["error"] == "insecure_transport"
        assert body["field"] is None
        assert body["detail"] == body["error_description"]
        assert "loopback address only" in body["detail"] and peer in body["detail"]
        assert "https" in body["detail"]
        assert "access_token" not in body


@pytest.mark.parametrize("peer", LOOPBACK_PEERS)
def test_plain_http_from_a_loopback_peer_works_whatever_host_it_names(
    app: FastAPI, admin_credentials: tuple[str, str], peer: str
) -> None:
    """A client on this machine, or a TLS-terminating proxy on it passing the public name on."""
    for host, http, response in token_responses(app, peer, admin_credentials):
        assert response.status_code == 200, (host, response.text)
        token = response.json()["access_token"]
        assert http.get("/partners", headers={**bearer(token), "Host": host}).status_code == 200


@pytest.mark.parametrize("peer", REMOTE_PEERS + LOOPBACK_PEERS)
def test_https_works_from_any_peer(
    app: FastAPI, admin_credentials: tuple[str, str], peer: str
) -> None:
    with connected(app, "https", peer) as https:
        response = https.post("/oauth/token", data=form(admin_credentials))
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert https.get("/partners", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("peer", REMOTE_PEERS)
def test_a_bearer_token_in_plain_http_from_another_machine_is_refused(
    app: FastAPI,
    admin: dict[str, str],
    make_partner,
    peer: str,  # type: ignore[no-untyped-def]
) -> None:
    """Every route taking a token: the token (and what the route returns, a partner's new
    secret for one) would cross the network in clear."""
    partner = make_partner("Remote partner")
    routes = [
        ("GET", "/partners", admin),
        ("POST", f"/partners/{partner['id']}/secret", admin),
        ("GET", "/agreements", partner["headers"]),
        ("GET", "/audit", admin),
    ]
    with connected(app, "http", peer) as http:
        for method, path, headers in routes:
            response = http.request(method, path, headers={**headers, "Host": "localhost"})
            assert response.status_code == 400, (path, response.text)
            body = response.json()
            assert body["error"] == "insecure_transport" and body["field"] is None
            assert "loopback address only" in body["detail"] and peer in body["detail"]
    # Nothing was done: the partner's secret still gets a token.
    with connected(app, "https", peer) as https:
        credentials = (partner["client_id"], partner["client_secret"])
        assert https.post("/oauth/token", data=form(credentials)).status_code == 200


def test_public_routes_stay_readable_in_plain_http(app: FastAPI) -> None:
    """The public keys and the API's description carry no secret."""
    with connected(app, "http", "203.0.113.9") as http:
        assert http.get("/.well-known/jwks.json").status_code == 200
        assert http.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:7f00:2", True),
        ("128.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::", False),
        ("0.0.0.0", False),
        ("localhost", False),  # a name is what a client claims, never what a peer is
        ("", False),
        ("testclient", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback

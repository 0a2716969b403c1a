"""Reviewer attacks on the plain-HTTP check: address forms, no peer, forged headers."""

from __future__ import annotations

import pytest
from authlib.common.security import is_secure_transport
from starlette.requests import Request

from service.auth.transport import connection_url, insecure_transport, is_loopback


def _request(client: tuple[str, int] | None, scheme: str = "http", **headers: str) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": scheme,
        "path": "/oauth/token",
        "query_string": b"",
        "server": ("service.example", 80),
        "client": client,
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "::1%lo"]
)
def test_loopback_forms(host: str) -> None:
    assert is_loopback(host)
    assert insecure_transport(_request((host, 5000))) is None
    assert is_secure_transport(connection_url(_request((host, 5000), host="evil.example")))


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "::ffff:10.0.0.1", "localhost", "127.0.0.1.evil", "", "10.0.0.1", "::2"],
)
def test_other_peers_are_refused_whatever_their_headers(host: str) -> None:
    forged = {"host": "localhost", "x_forwarded_proto": "https", "x_forwarded_for": "127.0.0.1"}
    assert insecure_transport(_request((host, 5000), **forged)) is not None


def test_no_peer_at_all_is_refused_in_plain_http_and_admitted_over_tls() -> None:
    # uvicorn on a unix socket gives no client: plain HTTP is then refused (fail closed).
    assert "unknown address" in (insecure_transport(_request(None)) or "")
    assert insecure_transport(_request(None, scheme="https")) is None

"""``partage serve`` as uvicorn runs it: the client's address is the TCP peer's, whatever
headers the client sends (the token endpoint's limits count per address)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from service.cli import app
from service.config import get_settings
from service.serving import only_server
from tests.service.test_cli_admin import environment

__all__ = ["environment"]


def served(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ASGI app as `partage serve` has uvicorn run it (its middleware included)."""
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **options: served.update(asgi=asgi, **options))
    result = CliRunner().invoke(app, ["serve", "--port", "8799"])
    assert result.exit_code == 0, result.output
    config = uvicorn.Config(served.pop("asgi"), **served)
    config.load()
    return config.loaded_app


def test_forwarded_headers_from_a_loopback_peer_do_not_pick_the_address(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTAGE_TOKEN_ATTEMPTS_BURST", "3")
    asgi = served(monkeypatch)

    async def attempts() -> list[int]:
        # The peer is on the host (a local reverse proxy, or a client on the machine).
        transport = httpx.ASGITransport(app=asgi, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8799") as http:
            return [
                (
                    await http.post(
                        "/oauth/token",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": "x",
                            "client_secret": "y",
                        },
                        headers={"X-Forwarded-For": f"10.0.0.{i}", "X-Forwarded-Proto": "https"},
                    )
                ).status_code
                for i in range(5)
            ]

    assert asyncio.run(attempts()) == [401, 401, 401, 429, 429]


def test_plain_http_from_another_machine_gets_no_token_whatever_its_headers_claim(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Host: localhost` used to pass authlib's check; `X-Forwarded-Proto: https` is no TLS."""
    saved = environment / "admin.json"
    assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0
    made = CliRunner().invoke(app, ["admin", "create-client", "admin", "--save", str(saved)])
    assert made.exit_code == 0, made.output
    saved_credentials = json.loads(saved.read_text())
    credentials = {name: saved_credentials[name] for name in ("client_id", "client_secret")}
    asgi = served(monkeypatch)
    claims = {"Host": "localhost", "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"}

    async def token_from(peer: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=asgi, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://192.0.2.1:8799") as http:
            form = {"grant_type": "client_credentials", **credentials}
            return await http.post("/oauth/token", data=form, headers=claims)

    remote = asyncio.run(token_from("203.0.113.9"))
    assert remote.status_code == 400, remote.text
    assert remote.json()["error"] == "insecure_transport"
    assert "203.0.113.9" in remote.json()["error_description"]
    assert asyncio.run(token_from("127.0.0.1")).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_second_server_on_one_database_is_refused(
    environment: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, backend: str
) -> None:
    """Each server takes the running jobs it does not run as interrupted: a second one on the
    same database would requeue (and delete the files of) the first one's jobs every poll."""
    url = (
        f"sqlite:///{environment / 'cli.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgresql_url")
    )
    monkeypatch.setenv("PARTAGE_DATABASE_URL", url)
    get_settings.cache_clear()
    served: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **options: served.append(options["port"]))
    with only_server(url):  # the first server
        second = CliRunner().invoke(app, ["serve", "--port", "8798"])
    assert second.exit_code == 2, second.output
    assert "another `partage serve`" in second.output and "PARTAGE_DATABASE_URL" in second.output
    assert served == []
    assert CliRunner().invoke(app, ["serve", "--port", "8798"]).exit_code == 0  # once it stopped
    assert served == [8798]

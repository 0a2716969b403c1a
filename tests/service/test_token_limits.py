"""Token requests are limited before argon2 runs: every attempt per address, failures per
(client id, address); an attacker failing on a client's id cannot lock that client out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import service.auth.server as token_server
from service.ratelimit import TokenAttempts

ATTACKER = ("203.0.113.66", 4000)
PARTNER = ("198.51.100.7", 5000)


@pytest.fixture
def argon2_runs(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times the token endpoint ran argon2 (a secret checked, or the decoy check)."""
    runs: Counter[str] = Counter()
    real_match, real_spend = token_server.secret_matches, token_server.spend_a_check

    def matches(record: object, secret: str) -> bool:
        runs["argon2"] += 1
        return real_match(record, secret)  # type: ignore[arg-type]

    def spend(secret: str) -> None:
        runs["argon2"] += 1
        real_spend(secret)

    monkeypatch.setattr(token_server, "secret_matches", matches)
    monkeypatch.setattr(token_server, "spend_a_check", spend)
    return runs


@pytest.fixture
def from_address(app: FastAPI) -> Iterator[dict[tuple[str, int], TestClient]]:
    """A test client per remote address (opened on first use), over TLS as a remote one must."""
    clients: dict[tuple[str, int], TestClient] = {}

    class Clients(dict):  # type: ignore[type-arg]
        def __missing__(self, address: tuple[str, int]) -> TestClient:
            opened = TestClient(app, base_url="https://partage.test", client=address).__enter__()
            self[address] = opened
            return opened

    clients = Clients()
    yield clients
    for opened in clients.values():
        opened.__exit__(None, None, None)


def form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def test_failures_on_a_client_id_stop_before_argon2_and_do_not_lock_the_client_out(
    app: FastAPI,
    admin_credentials: tuple[str, str],
    argon2_runs: Counter[str],
    from_address: dict[tuple[str, int], TestClient],
) -> None:
    app.state.token_attempts = TokenAttempts(1000, 10_000, failures_per_minute=1, failures_burst=3)
    client_id, secret = admin_credentials
    attack = [
        from_address[ATTACKER].post("/oauth/token", data=form(client_id, f"guess{i}"))
        for i in range(50)
    ]
    assert [r.status_code for r in attack] == [401] * 3 + [429] * 47
    assert argon2_runs["argon2"] == 3, "argon2 ran past the limit"
    limited = attack[-1]
    assert limited.json() == {
        "error": "too_many_requests",
        "error_description": limited.json()["detail"],
        "detail": limited.json()["detail"],
        "field": "client_id",
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # The right secret from the attacker's address is refused too (it is not checked at all)...
    assert (
        from_address[ATTACKER].post("/oauth/token", data=form(client_id, secret)).status_code == 429
    )
    # ...but the client itself, from its own address, is not locked out, again and again.
    for _ in range(10):
        assert (
            from_address[PARTNER].post("/oauth/token", data=form(client_id, secret)).status_code
            == 200
        )
    assert argon2_runs["argon2"] == 13


def test_every_attempt_of_one_address_is_capped_whatever_the_client_ids(
    app: FastAPI, argon2_runs: Counter[str], from_address: dict[tuple[str, int], TestClient]
) -> None:
    app.state.token_attempts = TokenAttempts(0.01, 5, failures_per_minute=1000, failures_burst=1000)
    statuses = [
        from_address[ATTACKER].post("/oauth/token", data=form(f"ptg_made_up_{i}", "x")).status_code
        for i in range(40)
    ]
    assert statuses == [401] * 5 + [429] * 35
    assert argon2_runs["argon2"] == 5
    limited = from_address[ATTACKER].post("/oauth/token", data=form("ptg_other", "x"))
    assert limited.json()["field"] is None and int(limited.headers["Retry-After"]) >= 1
    assert (
        from_address[PARTNER].post("/oauth/token", data=form("ptg_other", "x")).status_code == 401
    )


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["legit", "c1", "c2", ""]),
            st.sampled_from(["a0", "a1", "a2", "home"]),
            st.booleans(),
        ),
        max_size=120,
    ),
    burst=st.integers(1, 30),
    failures=st.integers(1, 10),
)
def test_no_sequence_of_attempts_runs_more_checks_than_the_limits(
    events: list[tuple[str, str, bool]], burst: int, failures: int
) -> None:
    """Within one instant (no refill): an address gets at most ``burst`` checks, a (client id,
    address) at most ``failures`` failed ones, and the legitimate client, whose attempts from
    its own address ``home`` all succeed, is refused only once that address's cap is spent,
    whatever failures others made on its id from elsewhere."""
    limits = TokenAttempts(1e-9, burst, failures_per_minute=1e-9, failures_burst=failures)
    checks: Counter[str] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for claimed, address, right in events:
        client_id = "legit" if address == "home" else claimed
        wait, _ = limits.admit(client_id, address)
        if wait:
            continue
        checks[address] += 1
        if client_id == "legit" and (address == "home" or right):
            limits.succeeded(client_id, address)
        else:
            failed[client_id, address] += 1
    assert all(count <= burst for count in checks.values())
    assert all(count <= failures for count in failed.values())
    admitted = limits.admit("legit", "home") == (0, None)
    assert admitted == (checks["home"] < burst)


def test_one_ipv6_host_changing_its_address_within_its_64_is_one_address(
    app: FastAPI, argon2_runs: Counter[str], from_address: dict[tuple[str, int], TestClient]
) -> None:
    """A host given a /64 picks any of 2^64 source addresses: counted apart, each got a fresh
    burst and the cap bounded nothing."""
    app.state.token_attempts = TokenAttempts(0.01, 5, failures_per_minute=1000, failures_burst=1000)
    statuses = [
        from_address[(f"2001:db8:0:7::{i:x}", 4000)]
        .post("/oauth/token", data=form("ptg_made_up", "x"))
        .status_code
        for i in range(1, 12)
    ]
    assert statuses == [401] * 5 + [429] * 6
    assert argon2_runs["argon2"] == 5
    # Another /64, and the IPv4-mapped form of an IPv4 address, are counted as what they are.
    assert (
        from_address[("2001:db8:0:8::1", 4000)]
        .post("/oauth/token", data=form("ptg_made_up", "x"))
        .status_code
        == 401
    )
    mapped = [
        from_address[(host, 4000)].post("/oauth/token", data=form("ptg_made_up", "x")).status_code
        for host in ["::ffff:198.51.100.9"] * 3 + ["198.51.100.9"] * 3
    ]
    assert mapped == [401] * 5 + [429]

"""Rate limits, in this process: one token bucket per key (a client id, an address, or both).

API requests are limited per client id. Token requests (``POST /oauth/token``, where every
attempt runs argon2, about 0.1 s and 19 MiB) are limited before any secret is checked: every
attempt per remote address, and failed attempts per (client id, address). Failures are not
counted per client id alone, so an attacker failing on a client's id from elsewhere cannot lock
that client out; the per-address cap bounds what one address can make the server compute.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time

# Buckets are forgotten once full again, checked every this many takes (bounds the memory an
# attacker inventing client ids can fill).
PRUNE_EVERY = 1024
IPV6_PREFIX = 64


class RateLimiter:
    """``per_second`` requests on average, bursts of up to ``burst``."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()
        self.takes = 0

    def take(self, key: str) -> int:
        """Spend one token of ``key``'s bucket: 0 if allowed, else seconds until one is back."""
        now = time.monotonic()
        with self.lock:
            self._prune(now)
            tokens, stamp = self.buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.per_second)
            if tokens < 1:
                self.buckets[key] = (tokens, now)
                return max(1, math.ceil((1 - tokens) / self.per_second))
            self.buckets[key] = (tokens - 1, now)
            return 0

    def give_back(self, key: str) -> None:
        """Return the token ``take`` spent (the attempt did not count)."""
        with self.lock:
            if key in self.buckets:
                tokens, stamp = self.buckets[key]
                self.buckets[key] = (min(self.burst, tokens + 1), stamp)

    def _prune(self, now: float) -> None:
        self.takes += 1
        if self.takes % PRUNE_EVERY:
            return
        full = [
            key
            for key, (tokens, stamp) in self.buckets.items()
            if tokens + (now - stamp) * self.per_second >= self.burst
        ]
        for key in full:
            del self.buckets[key]


class TokenAttempts:
    """The limits of the token endpoint: every attempt per address, failures per (client id,
    address). A failure's token is spent before the secret is checked (so concurrent attempts
    cannot all slip through) and given back when the client authenticates."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        failures_per_minute: float,
        failures_burst: int,
    ) -> None:
        self.attempts = RateLimiter(per_second, burst)
        self.failures = RateLimiter(failures_per_minute / 60.0, failures_burst)

    def admit(self, client_id: str, address: str) -> tuple[int, str | None]:
        """Seconds to wait (0: go on) and the field the limit names (``client_id`` for
        failures on that id, None for the address's overall cap)."""
        address = requester(address)
        wait = self.attempts.take(address)
        if wait:
            return wait, None
        wait = self.failures.take(_pair(client_id, address))
        return wait, ("client_id" if wait else None)

    def succeeded(self, client_id: str, address: str) -> None:
        """The client authenticated: its attempt was no failure."""
        self.failures.give_back(_pair(client_id, requester(address)))


def requester(address: str) -> str:
    """What the token limits count as one address: an IPv4 address (also when written as an
    IPv4-mapped IPv6 one), or an IPv6 address's /64, the block a single host or site is given
    (counting each of its 2^64 addresses apart would let one machine pass every limit)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


def _pair(client_id: str, address: str) -> str:
    return f"{address}\x00{client_id}"

"""A per-client rate limit: one token bucket per client id, in this process."""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """``per_second`` requests on average, bursts of up to ``burst``."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> int:
        """Spend one token of ``key``'s bucket: 0 if allowed, else seconds until one is back."""
        now = time.monotonic()
        with self.lock:
            tokens, stamp = self.buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.per_second)
            if tokens < 1:
                self.buckets[key] = (tokens, now)
                return max(1, math.ceil((1 - tokens) / self.per_second))
            self.buckets[key] = (tokens - 1, now)
            return 0

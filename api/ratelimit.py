"""Per-client rate limiting: a token bucket per client id, in memory, per server process."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """``rate_per_min`` requests a minute on average, bursts up to ``burst``; 0 turns limiting off."""

    def __init__(self, rate_per_min: int, burst: int, max_clients: int = 100_000):
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def hit(self, client: str, now: float | None = None) -> float:
        """Take one token; returns 0 when allowed, else the seconds until the next token."""
        if self.rate <= 0:
            return 0.0
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self.max_clients and client not in self._buckets:
                    self._buckets.clear()  # a flood of client ids: start over rather than grow without bound
                self._buckets[client] = (tokens - 1.0, t)
                return 0.0
            self._buckets[client] = (tokens, t)
            return (1.0 - tokens) / self.rate

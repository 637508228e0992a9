"""Per-client-key rate limits: a token bucket per key id (``server.requests_per_minute_per_key`` or the
key's own ``requests_per_minute``). A key may send a burst of up to its limit, then its limit a minute;
past it the request gets a 429 with ``Retry-After``. The buckets belong to one server (no global state)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class KeyRateLimits:
    """Token buckets by key id; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when counted)

    def acquire(self, key_id: str, per_minute: int | None) -> float:
        """Take one request from ``key_id``'s bucket: 0.0 when it may go, else the seconds until it may
        (nothing is taken then). ``per_minute=None``: no limit."""
        if per_minute is None:
            return 0.0
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + max(0.0, now - then) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate

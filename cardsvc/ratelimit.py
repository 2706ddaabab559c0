"""Fixed-window request counting per caller: Redis or in-process.

Both answer the same question the same way: may ``key`` make one more request in the
current window of ``window`` seconds, given ``limit``? ``None`` means yes; otherwise the
seconds until the window ends (the ``Retry-After``). Redis counts with ``INCR`` and sets
``EXPIRE`` on the first request of a window, so every node shares one count; the
in-process store serves a single process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from redis import Redis

WINDOW_SECONDS = 60


class RateLimiter(Protocol):
    def hit(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        """Count one request; ``None`` if within ``limit``, else seconds to wait."""
        ...


class MemoryRateLimiter:
    """In-process fixed windows; bounded by the number of callers seen per window."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}
        self._current = -1

    def hit(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        now = self._clock()
        slot = int(now // window)
        with self._lock:
            if slot != self._current:
                self._counts = {k: n for k, n in self._counts.items() if k[1] >= slot}
                self._current = slot
            count = self._counts.get((key, slot), 0) + 1
            self._counts[(key, slot)] = count
        if count <= limit:
            return None
        return max(1, math.ceil((slot + 1) * window - now))


class RedisRateLimiter:
    """Shared fixed windows: ``INCR`` then ``EXPIRE`` on the first hit, in one pipeline."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "cardsvc:rate:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock

    def hit(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        now = self._clock()
        slot = int(now // window)
        name = f"{self._prefix}{key}:{slot}"
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, window + 1, nx=True)
        count = int(pipe.execute()[0])
        if count <= limit:
            return None
        return max(1, math.ceil((slot + 1) * window - now))


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis when configured (shared by every node), the in-process store otherwise."""
    if redis_url:
        return RedisRateLimiter(Redis.from_url(redis_url, socket_timeout=2))
    return MemoryRateLimiter()

"""One-time use of identifiers (token ``jti``, proof ``jti``): Redis or in-process.

Both stores answer the same question the same way: is this the first use of ``key``
within ``ttl``? Redis does it atomically with ``SET NX EX`` so every verify node shares
it; the in-process store serves the embedded default with a single process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from redis import Redis


class ReplayCache(Protocol):
    def first_use(self, key: str, *, ttl_seconds: int) -> bool:
        """Record ``key``; ``True`` if it was not seen within its ttl, else ``False``."""
        ...


class MemoryReplayCache:
    """In-process store with expiry; bounded by the number of live keys."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._next_sweep = 0.0

    def first_use(self, key: str, *, ttl_seconds: int) -> bool:
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                # Sweep at most once a second so a flood of keys cannot grow without bound
                # and lookups stay O(1) on average.
                self._expiry = {k: t for k, t in self._expiry.items() if t > now}
                self._next_sweep = now + 1.0
            expires = self._expiry.get(key)
            if expires is not None and expires > now:
                return False
            self._expiry[key] = now + ttl_seconds
            return True


class RedisReplayCache:
    """Shared store: ``SET key 1 NX EX ttl`` is atomic across every node."""

    def __init__(self, client: Redis, *, prefix: str = "cardsvc:replay:") -> None:
        self._client = client
        self._prefix = prefix

    def first_use(self, key: str, *, ttl_seconds: int) -> bool:
        return bool(self._client.set(self._prefix + key, b"1", nx=True, ex=ttl_seconds))


def make_replay_cache(redis_url: str | None) -> ReplayCache:
    """Redis when configured (shared by every node), the in-process store otherwise."""
    if redis_url:
        return RedisReplayCache(Redis.from_url(redis_url, socket_timeout=2))
    return MemoryReplayCache()

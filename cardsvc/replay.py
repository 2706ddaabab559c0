"""One-time use of identifiers (token ``jti``, proof ``jti``): Redis or in-process.

Both stores answer the same question the same way: is this the first use of ``key``
within ``ttl``? Redis does it atomically with ``SET NX EX`` so every verify node shares
it; the in-process store serves the embedded default with a single process. Each answers
blocking (``first_use``) or on the event loop (``first_use_async``, the verify hot path);
a Redis that does not answer raises
:class:`~cardsvc.redisstore.SharedStoreUnavailableError` (503), never a first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cardsvc.redisstore import RedisStore, unavailable_as_503


class ReplayCache(Protocol):
    def first_use(self, key: str, *, ttl_seconds: int) -> bool:
        """Record ``key``; ``True`` if it was not seen within its ttl, else ``False``."""
        ...

    async def first_use_async(self, key: str, *, ttl_seconds: int) -> bool:
        """:meth:`first_use` without blocking the event loop."""
        ...


@dataclass(frozen=True, slots=True)
class OneTimeUse:
    """A first use still to record: ``key`` in ``cache`` for ``ttl_seconds``.

    What a check hands on when recording must wait for something else (the verify path
    records a token's ``jti`` only once the caller's rate limit admits the request).
    """

    cache: ReplayCache
    key: str
    ttl_seconds: int

    async def record(self) -> bool:
        return await self.cache.first_use_async(self.key, ttl_seconds=self.ttl_seconds)


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

    async def first_use_async(self, key: str, *, ttl_seconds: int) -> bool:
        return self.first_use(key, ttl_seconds=ttl_seconds)  # no I/O: answered directly


class RedisReplayCache:
    """Shared store: ``SET key 1 NX EX ttl`` is atomic across every node."""

    def __init__(self, store: RedisStore, *, prefix: str = "cardsvc:replay:") -> None:
        self.store = store
        self._prefix = prefix

    def redis_key(self, key: str) -> str:
        """The Redis key recording ``key`` (the rate limiter sets it in its own script)."""
        return self._prefix + key

    def first_use(self, key: str, *, ttl_seconds: int) -> bool:
        with unavailable_as_503():
            return bool(self.store.blocking.set(self._prefix + key, b"1", nx=True, ex=ttl_seconds))

    async def first_use_async(self, key: str, *, ttl_seconds: int) -> bool:
        with unavailable_as_503():
            return bool(
                await self.store.client().set(self._prefix + key, b"1", nx=True, ex=ttl_seconds)
            )


def make_replay_cache(redis: RedisStore | None, *, prefix: str = "cardsvc:") -> ReplayCache:
    """Redis when configured (shared by every node), the in-process store otherwise."""
    if redis is None:
        return MemoryReplayCache()
    return RedisReplayCache(redis, prefix=prefix + "replay:")

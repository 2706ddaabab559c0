"""Fixed-window request counting per caller: Redis or in-process.

Both answer the same question the same way: may ``key`` make one more request in the
current window of ``window`` seconds, given ``limit``? ``None`` means yes; otherwise the
seconds until the window ends (the ``Retry-After``). Redis counts with ``INCR`` and sets
``EXPIRE`` on the first request of a window, so every node shares one count; the
in-process store serves a single process.

Every limited endpoint counts through :func:`admit`: one request against one key under
one limit, or :class:`RateLimitedError` (429 with ``Retry-After``). Keys name what is
counted (``verify:<client>``, ``token-address:<ip>``, ...); the limits come from
:class:`cardsvc.settings.RateLimits` (and a partner's own policy for verify).

The verify hot path counts on the event loop (:meth:`RateLimiter.hit_async`) and hands
over the token's one-time use to record only if the request is admitted; one Redis server
does both in one script, so a verify costs one round trip. A Redis Cluster takes two, one
per key (see "Keys on a Redis Cluster" below). A Redis that does not answer raises
:class:`~cardsvc.redisstore.SharedStoreUnavailableError` (503), never an admission.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.commands.core import AsyncScript, Script

from cardsvc.errors import CardsvcError, Throttled
from cardsvc.redisstore import RedisStore, unavailable_as_503
from cardsvc.replay import OneTimeUse, RedisReplayCache

WINDOW_SECONDS = 60

# Count, and record the one-time key only if the count is within the limit: atomic, so
# a refused request never consumes a token and two nodes never both admit one use.
# KEYS[1] the counter, KEYS[2] (optional, one Redis server only) the one-time key;
# ARGV[1] the limit, ARGV[2] the counter's ttl, ARGV[3] the one-time key's ttl.
# Returns {admitted, first use}.
#
# Keys on a Redis Cluster. A script runs on one node, so all its keys must hash to one
# slot. The counter (``<prefix>rate:<caller>:<window>``) is one key per caller and
# window; the one-time key (``<prefix>replay:qr:<jti>``) must be one key per jti, the
# same whichever caller presents the token: a hash tag shared by the two (say
# ``{verify:<client>}``) would give a jti one record per client, and a token replayed
# at a second partner would pass. No tag can make both hold, so on a cluster the script
# takes the counter alone and the jti is recorded after it with ``SET NX EX`` (two round
# trips, to the two keys' masters; still a refused request never consumes a token, and
# ``SET NX`` alone keeps two nodes from both admitting one use). Neither key carries a
# hash tag, so the whole key is hashed: callers and tokens spread over all 16,384 slots
# (and the settings refuse a prefix with braces, whose tag would pin every key to one
# slot). A counter increment whose jti then finds its master down is the one thing
# spent: the request counts and is answered 503, the token stays unused.
_HIT_THEN_USE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return {0, 0} end
if #KEYS < 2 then return {1, 0} end
local first = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3])
if first then return {1, 1} end
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Admission:
    """One counted request: refused (``retry_after`` seconds) or admitted.

    ``first_use`` answers the one-time use handed to :meth:`RateLimiter.hit_async`;
    ``None`` when there was none or the request was refused (nothing was recorded).
    """

    retry_after: int | None = None
    first_use: bool | None = None


class RateLimiter(Protocol):
    def hit(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        """Count one request; ``None`` if within ``limit``, else seconds to wait."""
        ...

    def known_refusal(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        """Seconds to wait if ``key`` is known, without a round trip, to be over ``limit``
        in this window (a hit could only be refused), else ``None``.

        Counting it would change nothing: a window's count only grows, and once over the
        limit every later request in the window is refused.
        """
        ...

    async def hit_async(
        self,
        key: str,
        *,
        limit: int,
        window: int = WINDOW_SECONDS,
        then_use: OneTimeUse | None = None,
    ) -> Admission:
        """Count one request on the event loop, then, only if admitted, record ``then_use``."""
        ...


def _retry_after(now: float, slot: int, window: int) -> int:
    return max(1, math.ceil((slot + 1) * window - now))


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
        return _retry_after(now, slot, window)

    def known_refusal(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        now = self._clock()
        slot = int(now // window)
        if self._counts.get((key, slot), 0) <= limit:
            return None
        return _retry_after(now, slot, window)

    async def hit_async(
        self,
        key: str,
        *,
        limit: int,
        window: int = WINDOW_SECONDS,
        then_use: OneTimeUse | None = None,
    ) -> Admission:
        retry_after = self.hit(key, limit=limit, window=window)  # no I/O: answered directly
        if retry_after is not None:
            return Admission(retry_after=retry_after)
        return Admission(first_use=None if then_use is None else await then_use.record())


class RedisRateLimiter:
    """Shared fixed windows: ``INCR`` then ``EXPIRE`` on the first hit, atomically.

    Remembers, per process and window, the callers it saw refused, so a caller over its
    limit is refused again without a round trip (see :meth:`known_refusal`).
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        prefix: str = "cardsvc:rate:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._prefix = prefix
        self._clock = clock
        self._refused: tuple[int, set[str]] = (-1, set())  # (window slot, keys refused in it)
        self._script: AsyncScript | None = None
        self._blocking_script: Script | None = None

    def _remember_refused(self, key: str, slot: int) -> None:
        current, keys = self._refused
        if current != slot:
            keys = set()
            self._refused = (slot, keys)
        keys.add(key)

    def known_refusal(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        now = self._clock()
        slot = int(now // window)
        current, keys = self._refused
        if current != slot or key not in keys:
            return None
        return _retry_after(now, slot, window)

    def hit(self, key: str, *, limit: int, window: int = WINDOW_SECONDS) -> int | None:
        now = self._clock()
        slot = int(now // window)
        name = f"{self._prefix}{key}:{slot}"
        with unavailable_as_503():
            script = self._blocking_script
            if script is None:
                script = self.store.blocking.register_script(_HIT_THEN_USE)
                self._blocking_script = script
            admitted, _ = script(keys=[name], args=[limit, window + 1, 0])
        if admitted:
            return None
        self._remember_refused(key, slot)
        return _retry_after(now, slot, window)

    async def hit_async(
        self,
        key: str,
        *,
        limit: int,
        window: int = WINDOW_SECONDS,
        then_use: OneTimeUse | None = None,
    ) -> Admission:
        known = self.known_refusal(key, limit=limit, window=window)
        if known is not None:
            return Admission(retry_after=known)
        now = self._clock()
        slot = int(now // window)
        keys = [f"{self._prefix}{key}:{slot}"]
        together = False
        if then_use is not None:
            cache = then_use.cache
            # One server: both keys in the one script. A cluster: never (see above).
            if (
                isinstance(cache, RedisReplayCache)
                and cache.store is self.store
                and not self.store.is_cluster
            ):
                keys.append(cache.redis_key(then_use.key))
                together = True
        client = self.store.client()
        script = self._script
        if script is None or script.registered_client is not client:
            script = self._script = client.register_script(_HIT_THEN_USE)
        ttl = then_use.ttl_seconds if then_use is not None else 0
        with unavailable_as_503():
            admitted, first = await script(keys=keys, args=[limit, window + 1, ttl])
        if not admitted:
            self._remember_refused(key, slot)
            return Admission(retry_after=_retry_after(now, slot, window))
        if then_use is None:
            return Admission()
        if together:
            return Admission(first_use=bool(first))
        # A one-time store elsewhere (another server, in-process, another slot of the
        # cluster): recorded after the count, so a refused request still never consumes it.
        return Admission(first_use=await then_use.record())


def make_rate_limiter(redis: RedisStore | None, *, prefix: str = "cardsvc:") -> RateLimiter:
    """Redis when configured (shared by every node), the in-process store otherwise."""
    if redis is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(redis, prefix=prefix + "rate:")


class RateLimitedError(Throttled, CardsvcError):
    """Too many requests in the current window; ``retry_after`` seconds to wait.

    The problem document names the limit (``limit_per_minute``), what it counts
    (``counted_per``: client, address or citizen ID) and ``retry_after``; the HTTP layer
    also sends ``Retry-After``. The counted key itself is never echoed (it may hold an ID
    number or an address).
    """

    code = "rate-limited"

    def __init__(self, limit: int, retry_after: int, *, counted_per: str = "client") -> None:
        super().__init__(
            f"more than {limit} requests per minute per {counted_per}; "
            f"retry after {retry_after} seconds"
        )
        self.retry_after = retry_after
        self.fields = {
            "limit_per_minute": limit,
            "counted_per": counted_per,
            "retry_after": retry_after,
        }


async def admit(
    limiter: RateLimiter,
    key: str,
    *,
    limit: int,
    counted_per: str,
    then_use: OneTimeUse | None = None,
) -> Admission:
    """Count one request against ``key`` under ``limit`` per minute, or raise
    :class:`RateLimitedError`: the one way every endpoint is limited.

    ``then_use`` is recorded only if the request is admitted (see
    :meth:`RateLimiter.hit_async`); on Redis both cost one round trip, and a key this
    process already saw refused in the current window is refused again without one.
    """
    admission = await limiter.hit_async(key, limit=limit, then_use=then_use)
    if admission.retry_after is not None:
        raise RateLimitedError(limit, admission.retry_after, counted_per=counted_per)
    return admission

"""The Redis server every issuer node shares for one-time use and rate limits.

One :class:`RedisStore` per process serves both :class:`cardsvc.replay.RedisReplayCache`
and :class:`cardsvc.ratelimit.RedisRateLimiter`: a blocking client for callers outside
the event loop (device proofs, client assertions, the CLI) and an asyncio client for the
verify hot path, so a round trip there never blocks the loop. Both clients fail fast (one
immediate retry, for a pooled connection the server dropped) and every failure to reach
Redis becomes :class:`SharedStoreUnavailableError`: one-time use and rate limits fail
closed, never open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis, RedisError
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from cardsvc.errors import CardsvcError, Unavailable

#: Seconds to connect and to wait for a reply; the verify path answers 503 after that.
TIMEOUT_SECONDS = 2.0


class SharedStoreUnavailableError(Unavailable, CardsvcError):
    """Redis (one-time use, rate limits) did not answer, so nothing passes unchecked."""

    code = "store-unavailable"

    def __init__(self, cause: BaseException) -> None:
        # The cause's text names the server's address: it goes to the log through
        # ``__cause__``, not to the caller.
        super().__init__(
            f"the shared store for one-time use and rate limits is unavailable "
            f"({type(cause).__name__}); nothing was accepted, retry shortly"
        )
        self.retry_after = 1


@contextmanager
def unavailable_as_503() -> Iterator[None]:
    """Turn any failure to talk to Redis into :class:`SharedStoreUnavailableError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise SharedStoreUnavailableError(exc) from exc


class RedisStore:
    """Clients for one Redis server, made from its URL (nothing connects until used)."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self._url = url
        self._timeout = timeout
        self.blocking: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._async: tuple[asyncio.AbstractEventLoop, AsyncRedis] | None = None

    def client(self) -> AsyncRedis:
        """The asyncio client of the running event loop.

        An asyncio connection belongs to the loop that opened it. A server process runs
        one loop, so this is made once; a test client starts a loop per request and gets
        a fresh client each time (the old one's sockets close when it is collected).
        """
        loop = asyncio.get_running_loop()
        current = self._async
        if current is None or current[0] is not loop:
            client = AsyncRedis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=AsyncRetry(NoBackoff(), 1),
            )
            current = self._async = (loop, client)
        return current[1]

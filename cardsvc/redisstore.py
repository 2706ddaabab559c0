"""The Redis every issuer node shares for one-time use and rate limits: one server, or a
Redis Cluster.

One :class:`RedisStore` per process serves both :class:`cardsvc.replay.RedisReplayCache`
and :class:`cardsvc.ratelimit.RedisRateLimiter`: a blocking client for callers outside
the event loop (device proofs, client assertions, the CLI) and an asyncio client for the
verify hot path, so a round trip there never blocks the loop. Both clients fail fast (one
immediate retry, for a pooled connection the server dropped) and every failure to reach
Redis becomes :class:`SharedStoreUnavailableError`: one-time use and rate limits fail
closed, never open.

On a cluster (:meth:`RedisStore.cluster`, redis-py's cluster clients) every command and
script touches exactly one key, so it never spans two hash slots (``CROSSSLOT``); see
:mod:`cardsvc.ratelimit` for why the verify path's counter and ``jti`` cannot share one.
A master that is down answers :class:`SharedStoreUnavailableError` for the keys of its
slots (and, while the cluster reports ``CLUSTERDOWN``, for all), never a first use.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from redis import Redis, RedisError
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
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
    except (RedisError, RedisClusterException, OSError) as exc:
        raise SharedStoreUnavailableError(exc) from exc


#: The asyncio client: one server's or a cluster's.
AsyncClient = AsyncRedis | AsyncRedisCluster


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


class RedisStore:
    """Clients for one Redis server (made from its URL) or for a Redis Cluster
    (:meth:`cluster`); nothing connects until used."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        cluster_nodes: Sequence[str] = (),
    ) -> None:
        self._url = url
        self._timeout = timeout
        #: A cluster's startup nodes besides ``url`` (its first), so that the clients
        #: still find the cluster while that one node is down.
        self._others = tuple(u for u in cluster_nodes if u != url)
        self.is_cluster = bool(cluster_nodes)
        self._lock = threading.Lock()
        self._blocking: Redis | RedisCluster | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncClient] | None = None

    @property
    def blocking(self) -> Redis | RedisCluster:
        """The blocking client, made on first use: a cluster client connects as it is
        made (to learn the slots), so an issuer starts while its cluster is away, and
        answers 503 until it is back. Use it inside :func:`unavailable_as_503`."""
        with self._lock:
            if self._blocking is None:
                self._blocking = self._make_blocking()
            return self._blocking

    def _make_blocking(self) -> Redis | RedisCluster:
        if self.is_cluster:
            return RedisCluster.from_url(
                self._url,
                startup_nodes=[
                    ClusterNode(*_host_port(u))  # type: ignore[no-untyped-call]  # redis-py
                    for u in self._others
                ],
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 1),
            )
        return Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 1),
        )

    @classmethod
    def cluster(cls, nodes: Sequence[str], *, timeout: float = TIMEOUT_SECONDS) -> RedisStore:
        """Clients for the Redis Cluster reached through ``nodes`` (``redis://`` or
        ``rediss://`` URLs of some of its nodes; the clients discover the rest). The
        first URL's credentials and TLS apply to every node."""
        if not nodes:
            raise ValueError("a Redis Cluster needs at least one node URL")
        return cls(nodes[0], timeout=timeout, cluster_nodes=tuple(nodes))

    def client(self) -> AsyncClient:
        """The asyncio client of the running event loop.

        An asyncio connection belongs to the loop that opened it. A server process runs
        one loop, so this is made once; a test client starts a loop per request and gets
        a fresh client each time (the old one's sockets close when it is collected).
        """
        loop = asyncio.get_running_loop()
        current = self._async
        if current is None or current[0] is not loop:
            client: AsyncClient
            if self.is_cluster:
                client = AsyncRedisCluster.from_url(
                    self._url,
                    startup_nodes=[AsyncClusterNode(*_host_port(u)) for u in self._others],
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=AsyncRetry(NoBackoff(), 1),
                )
            else:
                client = AsyncRedis.from_url(
                    self._url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=AsyncRetry(NoBackoff(), 1),
                )
            current = self._async = (loop, client)
        return current[1]

    def close(self) -> None:
        """Close the blocking client's connections (the asyncio one closes with its loop)."""
        with self._lock:
            if self._blocking is not None:
                self._blocking.close()
                self._blocking = None


def make_redis_store(url: str | None, cluster_nodes: Sequence[str]) -> RedisStore | None:
    """The store the settings name: a cluster, one server, or none (in-process stores)."""
    if cluster_nodes:
        return RedisStore.cluster(cluster_nodes)
    if url:
        return RedisStore(url)
    return None

"""One-time use: the same behaviour from Redis and from the in-process store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from cardsvc.errors import Unavailable
from cardsvc.redisstore import RedisStore, SharedStoreUnavailableError
from cardsvc.replay import MemoryReplayCache, OneTimeUse, RedisReplayCache, ReplayCache
from tests.issuer.conftest import STORE_PARAMS, shared_redis

#: Nothing listens on port 1: every connection is refused at once.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture(params=STORE_PARAMS)
def cache(request: pytest.FixtureRequest) -> Iterator[ReplayCache]:
    if request.param == "memory":
        yield MemoryReplayCache()
        return
    store, prefix = shared_redis(request, request.param)
    yield RedisReplayCache(store, prefix=prefix)


def test_first_use_then_replay(cache: ReplayCache) -> None:
    assert cache.first_use("jti-1", ttl_seconds=60) is True
    assert cache.first_use("jti-1", ttl_seconds=60) is False
    assert cache.first_use("jti-2", ttl_seconds=60) is True


def test_key_is_usable_again_after_its_ttl(cache: ReplayCache) -> None:
    assert cache.first_use("short", ttl_seconds=1) is True
    assert cache.first_use("short", ttl_seconds=1) is False
    deadline = time.monotonic() + 5
    while not cache.first_use("short", ttl_seconds=1):
        assert time.monotonic() < deadline, "key never expired"
        time.sleep(0.1)


def test_async_answers_as_the_blocking_call(cache: ReplayCache) -> None:
    async def uses() -> list[bool]:
        once = OneTimeUse(cache, "jti-a", 60)
        return [
            await cache.first_use_async("jti-a", ttl_seconds=60),
            await once.record(),
            cache.first_use("jti-a", ttl_seconds=60),
            await cache.first_use_async("jti-b", ttl_seconds=60),
        ]

    assert asyncio.run(uses()) == [True, False, False, True]


def test_concurrent_first_uses_of_one_key_admit_exactly_one(cache: ReplayCache) -> None:
    async def race() -> list[bool]:
        return list(
            await asyncio.gather(
                *(cache.first_use_async("jti-c", ttl_seconds=60) for _ in range(8))
            )
        )

    assert sorted(asyncio.run(race())) == [False] * 7 + [True]


def test_an_unreachable_redis_fails_closed() -> None:
    store = RedisStore(DEAD_REDIS_URL)
    cache = RedisReplayCache(store)
    with pytest.raises(SharedStoreUnavailableError) as info:
        cache.first_use("jti-1", ttl_seconds=60)
    assert isinstance(info.value, Unavailable)  # answered 503 by the API
    assert "127.0.0.1" not in info.value.detail  # the address goes to the log only
    with pytest.raises(SharedStoreUnavailableError):
        asyncio.run(cache.first_use_async("jti-1", ttl_seconds=60))


@pytest.mark.redis
def test_redis_round_trip_keeps_keys_under_the_test_prefix(
    redis_client: tuple[object, str], redis_store: tuple[RedisStore, str]
) -> None:
    client, prefix = redis_client
    cache = RedisReplayCache(redis_store[0], prefix=prefix)
    assert cache.first_use("abc", ttl_seconds=30)
    assert asyncio.run(cache.first_use_async("def", ttl_seconds=30))
    for key in ("abc", "def"):
        assert client.get(prefix + key) == b"1"  # type: ignore[attr-defined]
        assert 0 < client.ttl(prefix + key) <= 30  # type: ignore[attr-defined]


def test_memory_store_sweeps_expired_keys() -> None:
    now = [0.0]
    cache = MemoryReplayCache(clock=lambda: now[0])
    for i in range(1000):
        cache.first_use(f"k{i}", ttl_seconds=1)
    now[0] = 5.0
    cache.first_use("fresh", ttl_seconds=1)
    assert len(cache._expiry) == 1

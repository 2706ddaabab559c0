"""One-time use: the same behaviour from Redis and from the in-process store."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cardsvc.replay import MemoryReplayCache, RedisReplayCache, ReplayCache


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest) -> Iterator[ReplayCache]:
    if request.param == "memory":
        yield MemoryReplayCache()
        return
    client, prefix = request.getfixturevalue("redis_client")
    yield RedisReplayCache(client, prefix=prefix)


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


@pytest.mark.redis
def test_redis_round_trip_keeps_keys_under_the_test_prefix(
    redis_client: tuple[object, str],
) -> None:
    client, prefix = redis_client
    cache = RedisReplayCache(client, prefix=prefix)  # type: ignore[arg-type]
    assert cache.first_use("abc", ttl_seconds=30)
    assert client.get(prefix + "abc") == b"1"  # type: ignore[attr-defined]
    assert 0 < client.ttl(prefix + "abc") <= 30  # type: ignore[attr-defined]


def test_memory_store_sweeps_expired_keys() -> None:
    now = [0.0]
    cache = MemoryReplayCache(clock=lambda: now[0])
    for i in range(1000):
        cache.first_use(f"k{i}", ttl_seconds=1)
    now[0] = 5.0
    cache.first_use("fresh", ttl_seconds=1)
    assert len(cache._expiry) == 1

"""Which Redis the settings name: one server (``CARDSVC_REDIS_URL``) or a Redis Cluster
(``CARDSVC_REDIS_CLUSTER_NODES``), never both; and how keys spread over a cluster."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.crc import key_slot

from cardsvc.ratelimit import RedisRateLimiter
from cardsvc.redisstore import RedisStore, SharedStoreUnavailableError, make_redis_store
from cardsvc.replay import RedisReplayCache
from cardsvc.settings import Settings


def test_cluster_nodes_come_from_the_environment_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CARDSVC_REDIS_CLUSTER_NODES", "redis://10.0.0.1:7000, rediss://:pw@10.0.0.2:7001"
    )
    settings = Settings()
    assert settings.redis_cluster_nodes == ("redis://10.0.0.1:7000", "rediss://:pw@10.0.0.2:7001")
    store = make_redis_store(settings.redis_url, settings.redis_cluster_nodes)
    assert store is not None and store.is_cluster  # nothing connected: made, not used


def test_a_cluster_not_there_is_503_on_use_not_a_failure_to_start() -> None:
    # Nothing listens on ports 1 and 2: refused at once.
    store = make_redis_store(None, ("redis://127.0.0.1:1", "redis://127.0.0.1:2"))
    assert store is not None
    cache, limiter = RedisReplayCache(store), RedisRateLimiter(store)
    with pytest.raises(SharedStoreUnavailableError):
        cache.first_use("jti", ttl_seconds=60)
    with pytest.raises(SharedStoreUnavailableError):
        asyncio.run(cache.first_use_async("jti", ttl_seconds=60))
    with pytest.raises(SharedStoreUnavailableError):
        limiter.hit("verify:partner", limit=10)
    with pytest.raises(SharedStoreUnavailableError):
        asyncio.run(limiter.hit_async("verify:partner", limit=10))
    store.close()


def test_one_server_or_none() -> None:
    single = make_redis_store("redis://127.0.0.1:6379/0", ())
    assert single is not None and not single.is_cluster
    assert make_redis_store(None, ()) is None


@pytest.mark.parametrize(
    "fields",
    [
        # Both: which one would hold the replay memory is not for the code to guess.
        {"redis_url": "redis://a:6379/0", "redis_cluster_nodes": ("redis://b:7000",)},
        {"redis_cluster_nodes": ("10.0.0.1:7000",)},  # not a URL
        {"redis_cluster_nodes": ("http://10.0.0.1:7000",)},
        {"redis_cluster_nodes": ("redis://",)},  # no host
        {"redis_cluster_nodes": ("redis://10.0.0.1:99999",)},  # no port
        # A {hash tag} in the prefix would put every key of the cluster in one slot.
        {"redis_prefix": "cardsvc:{issuer}:"},
    ],
)
def test_bad_redis_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**fields)  # type: ignore[arg-type]


def test_keys_of_different_callers_and_tokens_spread_over_the_slots() -> None:
    """No key carries a hash tag: each is hashed whole, so counters and one-time keys
    land all over the cluster rather than on one master."""
    cache = RedisReplayCache(RedisStore.cluster(["redis://127.0.0.1:1"]), prefix="cardsvc:replay:")
    replay_slots = {key_slot(cache.redis_key(f"qr:{n:032x}").encode()) for n in range(300)}
    rate_slots = {key_slot(f"cardsvc:rate:verify:partner-{n}:2900".encode()) for n in range(300)}
    for slots in (replay_slots, rate_slots):
        thirds = {slot * 3 // 16384 for slot in slots}
        assert len(slots) > 250 and thirds == {0, 1, 2}


_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,14}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True)
_node_urls = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}:{port}",
    st.sampled_from(["redis", "rediss"]),
    _hosts,
    st.integers(1, 65535),
)


@given(
    urls=st.lists(_node_urls, min_size=1, max_size=6),
    gaps=st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=12, max_size=12),
)
def test_any_comma_separated_node_list_parses_to_its_urls(urls: list[str], gaps: list[str]) -> None:
    text = ",".join(f"{gaps[2 * i]}{url}{gaps[2 * i + 1]}" for i, url in enumerate(urls))
    assert Settings(redis_cluster_nodes=text).redis_cluster_nodes == tuple(urls)  # type: ignore[arg-type]


@given(
    st.text(max_size=40).filter(
        lambda t: any(part.strip() for part in t.split(",")) and "redis" not in t
    )
)
def test_a_node_that_is_no_redis_url_is_refused(text: str) -> None:
    """Anything but blank parts (which are dropped) must be a redis:// or rediss:// URL."""
    with pytest.raises(ValidationError):
        Settings(redis_cluster_nodes=text)  # type: ignore[arg-type]

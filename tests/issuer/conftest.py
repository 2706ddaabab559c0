"""Issuer fixtures: settings on a temporary key store and database; the issuer's Redis
clients on the shared test server or on a Redis Cluster the session starts."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.redisstore import RedisStore
from cardsvc.settings import Settings
from tests.conftest import REDIS_URL, service_unavailable
from tests.redis_cluster import LocalCluster, redis_server_binary
from tests.softhsm import Token

#: The shared Redis stores a test may be parametrised over (``shared_redis``).
REDIS_KINDS = ("redis", "redis-cluster")


@pytest.fixture
def key_backend() -> str:
    """The key store the ``settings`` use: ``file``; a module that runs on both overrides
    this with ``params=["file", "pkcs11"]`` (tests/issuer/test_signing_backends.py)."""
    return "file"


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, key_backend: str, request: pytest.FixtureRequest
) -> Settings:
    base = Settings(
        database_url=database_url,
        key_dir=tmp_path / "keys",
        key_passphrase="test passphrase",  # type: ignore[arg-type]
        issuer="https://issuer.test",
    )
    if key_backend == "pkcs11":  # a SoftHSM2 token of the test's own
        token: Token = request.getfixturevalue("hsm_token")
        return token.settings(base, tmp_path)
    return base


@pytest.fixture
def redis_store(redis_client: tuple[object, str]) -> Iterator[tuple[RedisStore, str]]:
    """The issuer's Redis clients on the test server, and this test's key prefix (the
    ``redis_client`` fixture skips without Redis and deletes the prefix's keys after)."""
    _, prefix = redis_client
    store = RedisStore(REDIS_URL)
    yield store, prefix
    store.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-master Redis Cluster from the installed ``redis-server``, once per session
    (per xdist worker), on free loopback ports. Tests share it, each under its own
    prefix; a test that kills a master starts its own (``LocalCluster.start``)."""
    binary = redis_server_binary()
    if binary is None:
        service_unavailable("redis-server is not installed (Debian package redis-server)")
    assert binary is not None
    cluster = LocalCluster.start(binary, tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_store(redis_cluster: LocalCluster) -> Iterator[tuple[RedisStore, str]]:
    """The issuer's cluster clients on the session's cluster, and this test's key prefix
    (its keys deleted from every master after)."""
    prefix = f"test:{secrets.token_hex(6)}:"
    store = RedisStore.cluster(redis_cluster.urls)
    yield store, prefix
    store.close()
    redis_cluster.delete_prefix(prefix)


def shared_redis(request: pytest.FixtureRequest, kind: str) -> tuple[RedisStore, str]:
    """The store and prefix of ``kind``: ``redis`` (one server) or ``redis-cluster``."""
    assert kind in REDIS_KINDS, kind
    fixture = "redis_cluster_store" if kind == "redis-cluster" else "redis_store"
    store, prefix = request.getfixturevalue(fixture)
    return store, prefix


#: A store fixture's params: in-process, then each shared Redis store (marked ``redis``).
STORE_PARAMS = ["memory", *(pytest.param(kind, marks=pytest.mark.redis) for kind in REDIS_KINDS)]

"""Issuer fixtures: settings on a temporary key store and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.redisstore import RedisStore
from cardsvc.settings import Settings
from tests.conftest import REDIS_URL


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        key_dir=tmp_path / "keys",
        key_passphrase="test passphrase",  # type: ignore[arg-type]
        issuer="https://issuer.test",
    )


@pytest.fixture
def redis_store(redis_client: tuple[object, str]) -> Iterator[tuple[RedisStore, str]]:
    """The issuer's Redis clients on the test server, and this test's key prefix (the
    ``redis_client`` fixture skips without Redis and deletes the prefix's keys after)."""
    _, prefix = redis_client
    store = RedisStore(REDIS_URL)
    yield store, prefix
    store.blocking.close()

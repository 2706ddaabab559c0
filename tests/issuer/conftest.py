"""Issuer fixtures: settings on a temporary key store and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.redisstore import RedisStore
from cardsvc.settings import Settings
from tests.conftest import REDIS_URL
from tests.softhsm import Token


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
    store.blocking.close()

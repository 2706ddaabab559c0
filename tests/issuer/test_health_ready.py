"""/health/live and /health/ready: each dependency failing, named, with Retry-After."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.db.migrate import downgrade, head_revision, upgrade
from cardsvc.redisstore import RedisStore
from cardsvc.services import Services
from tests.issuer.registry_helpers import assert_problem, client, services

__all__ = ["client", "services"]


def not_ready(answer: object, dependency: str) -> dict[str, object]:
    body = assert_problem(answer, 503)
    assert body["type"].endswith("/not-ready")
    assert body["dependency"] == dependency, body
    assert answer.headers["retry-after"] == "5"  # type: ignore[attr-defined]
    return body


def test_live_and_ready(client: TestClient, services: Services) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.json()
    assert ready.json() == {
        "status": "ok",
        "database": {"revision": head_revision()},
        "redis": "not configured",
        "keys": {"issuing": len(services.keys.records()) - 1},
    }
    assert client.get("/health").status_code == 200  # the old one stays


def test_ready_names_an_unmigrated_database(client: TestClient, services: Services) -> None:
    downgrade(services.engine, "-1")
    body = not_ready(client.get("/health/ready"), "database")
    assert "cardsvc db upgrade" in str(body["detail"])
    assert client.get("/health/live").status_code == 200  # alive all the same
    upgrade(services.engine)
    assert client.get("/health/ready").status_code == 200


def test_ready_names_the_keys(client: TestClient, services: Services) -> None:
    moved = services.settings.key_dir.with_name("keys-away")
    shutil.move(services.settings.key_dir, moved)
    try:
        not_ready(client.get("/health/ready"), "keys")
    finally:
        shutil.move(moved, services.settings.key_dir)
    assert client.get("/health/ready").status_code == 200


@pytest.mark.redis
def test_ready_names_redis(services: Services, redis_store: tuple[RedisStore, str]) -> None:
    store, _prefix = redis_store
    services.redis = store
    web = TestClient(create_app(services.settings, services=services))
    assert web.get("/health/ready").json()["redis"] == "ok"
    services.redis = RedisStore("redis://127.0.0.1:1/0", timeout=0.5)  # nothing listens
    not_ready(web.get("/health/ready"), "redis")

"""POST /v1/verify on each replay store and rate limiter: one-time use holds under
concurrency, a refused request never consumes a token, and an unreachable Redis fails
closed with a 503 problem (fast path and route alike)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.auth.tokens import issue_access_token
from cardsvc.ratelimit import MemoryRateLimiter, RedisRateLimiter
from cardsvc.redisstore import RedisStore
from cardsvc.replay import MemoryReplayCache, RedisReplayCache, ReplayCache
from cardsvc.services import Services
from tests.issuer.conftest import shared_redis
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import registry_services

DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: refused at once
PATHS = pytest.mark.parametrize("fast_verify", [True, False], ids=["fast-path", "route"])


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


def use_stores(services: Services, replay: ReplayCache, limiter: Any) -> None:
    services.use_stores(replay=replay, rate_limiter=limiter)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        # Both on a Redis Cluster: counted, then recorded on the jti's own slot.
        pytest.param("redis-cluster", marks=pytest.mark.redis),
        # The limiter on Redis, one-time use elsewhere: counted, then recorded apart.
        pytest.param("redis-limiter-only", marks=pytest.mark.redis),
    ]
)
def stores(request: pytest.FixtureRequest, services: Services) -> str:
    if request.param == "memory":
        use_stores(services, MemoryReplayCache(), MemoryRateLimiter())
    else:
        kind = "redis-cluster" if request.param == "redis-cluster" else "redis"
        store, prefix = shared_redis(request, kind)
        replay: ReplayCache = (
            MemoryReplayCache()
            if request.param == "redis-limiter-only"
            else RedisReplayCache(store, prefix=prefix + "replay:")
        )
        use_stores(services, replay, RedisRateLimiter(store, prefix=prefix + "rate:"))
    return str(request.param)


def verifier(services: Services, rate_limit: int | None, subject: str = "metro") -> dict[str, str]:
    """A partner held to ``rate_limit`` (``None``: a terminal, held to the settings'
    ``rate_limits.verify_per_client``)."""
    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject=subject,
        kind="partner" if rate_limit is not None else "terminal",
        scopes=frozenset({"verify"}),
        now=services.clock(),
        purposes=frozenset({"transport"}) if rate_limit is not None else None,
        rate_limit=rate_limit,
    )
    return {"Authorization": f"Bearer {token}"}


def tokens(services: Services, count: int) -> list[str]:
    client = TestClient(create_app(services.settings, services=services))
    holder = active_holder(client, services, birth_date=None)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    out = []
    for _ in range(count):
        answer = mint(client, services, ecard["ecard_id"], phone, "transport")
        assert answer.status_code == 200, answer.json()
        out.append(str(answer.json()["tokens"][0]["token"]))
    return out


def verify_concurrently(
    services: Services, fast_verify: bool, bodies: list[dict[str, str]], headers: dict[str, str]
) -> list[httpx.Response]:
    """Every request in flight at once on one event loop, as a server would have them."""
    app = create_app(services.settings, services=services, fast_verify=fast_verify)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://issuer") as client:
            return list(
                await asyncio.gather(
                    *(client.post("/v1/verify", json=b, headers=headers) for b in bodies)
                )
            )

    return asyncio.run(run())


@PATHS
@pytest.mark.parametrize("rate_limit", [1000, None], ids=["partner", "terminal"])
def test_concurrent_verifies_of_one_token_admit_exactly_one(
    services: Services, stores: str, fast_verify: bool, rate_limit: int | None
) -> None:
    (token,) = tokens(services, 1)
    body = {"token": token, "purpose": "transport"}
    answers = verify_concurrently(
        services, fast_verify, [body, body], verifier(services, rate_limit)
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 422], [a.json() for a in answers]
    valid = next(a for a in answers if a.status_code == 200).json()
    replayed = next(a for a in answers if a.status_code == 422).json()
    assert valid["valid"] is True
    assert replayed["check"] == "replayed"
    assert stores in {"memory", "redis", "redis-cluster", "redis-limiter-only"}


@PATHS
def test_a_refused_request_does_not_consume_the_token(
    services: Services, stores: str, fast_verify: bool
) -> None:
    client = TestClient(create_app(services.settings, services=services, fast_verify=fast_verify))
    good, spare = tokens(services, 2)
    metro = verifier(services, rate_limit=1)
    # A bad token: refused, but counted (the whole minute's allowance).
    first = client.post(
        "/v1/verify", json={"token": "SSC1:AAAA", "purpose": "transport"}, headers=metro
    )
    assert first.status_code == 422
    for _ in range(2):  # counted in Redis, then refused from memory: the same answer
        limited = client.post(
            "/v1/verify", json={"token": good, "purpose": "transport"}, headers=metro
        )
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another partner: the token the limiter refused was not used up.
    museum = verifier(services, rate_limit=5, subject="museum")
    ok = client.post("/v1/verify", json={"token": good, "purpose": "transport"}, headers=museum)
    assert ok.status_code == 200, ok.json()
    again = client.post("/v1/verify", json={"token": good, "purpose": "transport"}, headers=museum)
    assert again.json()["check"] == "replayed"
    # A purpose the partner may not verify: 403, the token kept for a gate that may.
    wrong = client.post("/v1/verify", json={"token": spare, "purpose": "identity"}, headers=museum)
    assert wrong.status_code == 403
    ok = client.post("/v1/verify", json={"token": spare, "purpose": "transport"}, headers=museum)
    assert ok.status_code == 200, ok.json()
    assert stores in {"memory", "redis", "redis-cluster", "redis-limiter-only"}


@PATHS
@pytest.mark.parametrize("rate_limit", [1000, None], ids=["partner", "terminal"])
def test_an_unreachable_redis_answers_503_never_valid(
    services: Services, fast_verify: bool, rate_limit: int | None
) -> None:
    (token,) = tokens(services, 1)
    dead = RedisStore(DEAD_REDIS_URL)
    use_stores(services, RedisReplayCache(dead), RedisRateLimiter(dead))
    client = TestClient(create_app(services.settings, services=services, fast_verify=fast_verify))
    headers = verifier(services, rate_limit)
    for body in (
        {"token": token, "purpose": "transport"},
        {"token": "SSC1:AA", "purpose": "transport"},
    ):
        answer = client.post("/v1/verify", json=body, headers=headers)
        # Every caller is counted (a terminal under RateLimits.verify_per_client): with
        # the limiter unreachable nothing is answered but 503, a bad token included.
        assert answer.status_code == 503, answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["Retry-After"] == "1"
        problem = answer.json()
        assert problem["type"].endswith("/store-unavailable")
        assert problem["status"] == 503
        assert "valid" not in problem and "claims" not in problem
        assert "127.0.0.1" not in problem["detail"]

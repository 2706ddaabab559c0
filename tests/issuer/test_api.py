"""The issuer API through its factory: refuses bad state, serves keys, answers problems."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.trustlist import TrustList
from cardsvc.db.migrate import head_revision, upgrade
from cardsvc.errors import DatabaseNotMigratedError, KeyStoreNotInitialisedError
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings


@pytest.fixture
def services(settings: Settings) -> Services:
    services = Services.from_settings(settings)
    services.keys.init(now=utcnow())
    upgrade(services.engine)
    return services


@pytest.fixture
def client(settings: Settings, services: Services) -> TestClient:
    return TestClient(create_app(settings, services=services))


def test_refuses_to_start_on_an_unmigrated_database(settings: Settings) -> None:
    services = Services.from_settings(settings)
    services.keys.init(now=utcnow())
    with pytest.raises(DatabaseNotMigratedError, match="cardsvc db upgrade"):
        create_app(settings, services=services)


def test_refuses_to_start_without_keys(settings: Settings) -> None:
    services = Services.from_settings(settings)
    upgrade(services.engine)
    with pytest.raises(KeyStoreNotInitialisedError, match="cardsvc keys init"):
        create_app(settings, services=services)


def test_health(client: TestClient, services: Services) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["database"]["revision"] == head_revision()
    assert body["keys"]["root"] == services.keys.root_key().kid
    assert body["keys"]["issuing"] == 6


def test_jwks_lists_issuing_keys_not_the_root(client: TestClient, services: Services) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    assert response.headers["cache-control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert {k["purpose"] for k in keys} == {p.value for p in KeyPurpose} - {"root"}
    for jwk in keys:
        assert "d" not in jwk
        assert VerifyingKey.from_jwk(jwk).kid == jwk["kid"]
    assert services.keys.root_key().kid not in {k["kid"] for k in keys}


def test_trust_list_is_cached_and_verifies(client: TestClient, services: Services) -> None:
    first = client.get("/v1/trust-list")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/trustlist+jwt"
    again = client.get("/v1/trust-list")
    assert again.text == first.text  # not re-signed per request
    etag = first.headers["etag"]
    assert client.get("/v1/trust-list", headers={"If-None-Match": etag}).status_code == 304
    trust_list = TrustList.verify(
        first.text, root=services.keys.root_key(), now=utcnow(), leeway=timedelta(seconds=5)
    )
    assert len(trust_list.keys) == 6
    # A rotation changes the key set: the next served list is re-signed with a higher seq.
    services.keys.rotate(KeyPurpose.ECARD, now=utcnow())
    rotated = client.get("/v1/trust-list")
    assert rotated.headers["etag"] != etag
    newer = TrustList.verify(
        rotated.text, root=services.keys.root_key(), now=utcnow(), leeway=timedelta(seconds=5)
    )
    assert newer.sequence > trust_list.sequence
    assert len(newer.keys) == 7


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("POST", "/health", 405), ("DELETE", "/v1/trust-list", 405)],
)
def test_errors_are_problem_json(client: TestClient, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]

"""Shared helpers of the registry tests: an app on the test database, tokens, people."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.auth.scopes import ROLE_SCOPES
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.identity import gb11643_check_character
from cardsvc.core.keys import public_jwk
from cardsvc.db.migrate import upgrade
from cardsvc.db.states import Role
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

CLERK = frozenset(s.value for s in ROLE_SCOPES[Role.CLERK])
AUDITOR = frozenset(s.value for s in ROLE_SCOPES[Role.AUDITOR])
_serial = itertools.count(1)


def citizen_id(n: int | None = None, *, region: str = "110105", birth: str = "19800101") -> str:
    """A valid citizen ID number; ``n`` picks the sequence (odd: male)."""
    n = next(_serial) if n is None else n
    first17 = f"{region}{birth}{n % 1000:03d}"
    return first17 + gb11643_check_character(first17)


def unique_citizen_id() -> str:
    """A valid ID number unique within the test run (varies birth date and sequence)."""
    n = next(_serial)
    day = datetime(1950, 1, 1) + timedelta(days=n // 1000)
    return citizen_id(n, birth=day.strftime("%Y%m%d"))


def chip_jwk() -> dict[str, str]:
    return public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())


def registry_services(settings: Settings) -> Services:
    settings = settings.model_copy(
        update={"status_shard_size": 131_072, "status_sync_interval_seconds": 0.0}
    )
    services = Services.from_settings(settings)
    upgrade(services.engine)  # first, so the key events below reach the audit log
    services.keys.init(now=utcnow() - timedelta(days=1))
    return services


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings, services=services))


def bearer(
    services: Services,
    scopes: frozenset[str] = CLERK,
    *,
    subject: str = "clerk-1",
    now: datetime | None = None,
) -> dict[str, str]:
    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject=subject,
        kind="operator",
        scopes=scopes,
        now=now or services.clock(),
    )
    return {"Authorization": f"Bearer {token}"}


def enrol(client: TestClient, services: Services, **fields: Any) -> dict[str, Any]:
    body = {"citizen_id": unique_citizen_id(), "name": "张三"} | fields
    response = client.post("/v1/persons", json=body, headers=bearer(services))
    assert response.status_code == 201, response.json()
    person: dict[str, Any] = response.json()
    return person


def issue(client: TestClient, services: Services, person_id: str) -> dict[str, Any]:
    response = client.post(f"/v1/persons/{person_id}/cards", headers=bearer(services))
    assert response.status_code == 201, response.json()
    card: dict[str, Any] = response.json()
    return card


def personalize(client: TestClient, services: Services, card_number: str) -> dict[str, Any]:
    response = client.post(
        f"/v1/cards/{card_number}/personalization",
        json={"chip_jwk": chip_jwk()},
        headers=bearer(services),
    )
    assert response.status_code == 200, response.json()
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["detail"]
    # Words a person reads, never a class name such as IllegalTransitionError.
    assert not re.search(r"\b(?:[A-Z][a-z0-9]+){2,}\b|Error\b", body["title"]), body["title"]
    return body

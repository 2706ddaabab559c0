"""The ASGI fast path of POST /v1/verify answers exactly as the FastAPI route does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import bearer, registry_services


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


def clients(services: Services) -> tuple[TestClient, TestClient]:
    fast = TestClient(create_app(services.settings, services=services))
    routed = TestClient(create_app(services.settings, services=services, fast_verify=False))
    return fast, routed


def shape(response: Any) -> tuple[int, str, Any]:
    """What must agree: status, media type, and the body (problems: type and check)."""
    body = response.json()
    if response.headers["content-type"] == "application/problem+json":
        body = (body["type"], body.get("check"), body["status"])
    return response.status_code, response.headers["content-type"], body


def test_fast_path_and_route_agree(services: Services) -> None:
    fast, routed = clients(services)
    holder = active_holder(fast, services, birth_date=None)
    phone = Phone()
    ecard = activate(fast, services, holder, phone)

    def fresh() -> str:
        answer = mint(fast, services, ecard["ecard_id"], phone, "transport")
        assert answer.status_code == 200, answer.json()
        return str(answer.json()["tokens"][0]["token"])

    verifier = bearer(services, frozenset({"verify"}), subject="partner-1")
    clerk = bearer(services)
    a, b = fresh(), fresh()
    ok_fast = fast.post("/v1/verify", json={"token": a, "purpose": "transport"}, headers=verifier)
    ok_routed = routed.post(
        "/v1/verify", json={"token": b, "purpose": "transport"}, headers=verifier
    )
    assert ok_fast.status_code == ok_routed.status_code == 200
    # The two tokens differ in jti, and in iat/exp when minted either side of a second.
    def strip(answer: httpx.Response) -> dict[str, Any]:
        claims = answer.json()["claims"]
        lifetime = claims["exp"] - claims["iat"]
        return {**answer.json(), "claims": {**claims, "jti": None, "iat": None, "exp": lifetime}}

    assert strip(ok_fast) == strip(ok_routed)

    cases: list[tuple[dict[str, str], Any]] = [
        (verifier, {"token": a, "purpose": "transport"}),  # replayed
        (verifier, {"token": fresh(), "purpose": "identity"}),  # wrong purpose
        (verifier, {"token": "SSC1:" + "A" * 20, "purpose": "transport"}),
        (clerk, {"token": a, "purpose": "transport"}),  # no verify scope
        ({}, {"token": a, "purpose": "transport"}),  # no token
        ({"Authorization": "Bearer nonsense"}, {"token": a, "purpose": "transport"}),
    ]
    for headers, body in cases:
        answers = [c.post("/v1/verify", json=body, headers=headers) for c in (fast, routed)]
        assert shape(answers[0]) == shape(answers[1]), (headers, body)

    malformed = [b"{", b"[]", b'{"token": 1, "purpose": "transport"}',
                 b'{"token": "SSC1:A", "purpose": "nope"}',
                 b'{"token": "SSC1:A", "purpose": "transport", "extra": 1}',
                 b'{"token": "' + b"A" * 20000 + b'", "purpose": "transport"}']  # fmt: skip
    for raw in malformed:
        answers = [
            c.post("/v1/verify", content=raw,
                   headers={**verifier, "Content-Type": "application/json"})
            for c in (fast, routed)
        ]  # fmt: skip
        assert [a.status_code for a in answers] == [422, 422], raw[:40]
        assert all(a.headers["content-type"] == "application/problem+json" for a in answers)

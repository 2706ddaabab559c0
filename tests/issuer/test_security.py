"""Bearer access tokens and scope checks on a real app."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import pytest
from fastapi import APIRouter, Security
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal, issue_access_token
from cardsvc.db.migrate import upgrade
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings


@pytest.fixture
def app_and_services(settings: Settings) -> tuple[TestClient, Services]:
    services = Services.from_settings(settings)
    services.keys.init(now=utcnow() - timedelta(days=1))  # so a token can be old
    upgrade(services.engine)
    app = create_app(settings, services=services)
    router = APIRouter()

    @router.get("/probe")
    async def probe(
        principal: Annotated[Principal, Security(require(Scope.PERSONS_READ))],
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    app.include_router(router)
    return TestClient(app), services


def token(services: Services, scopes: set[str], **kw: object) -> str:
    args: dict[str, object] = {
        "issuer": services.settings.issuer,
        "subject": "clerk-1",
        "kind": "operator",
        "scopes": frozenset(scopes),
        "now": utcnow(),
    }
    args.update(kw)
    return issue_access_token(services.keys, **args)  # type: ignore[arg-type]


def test_scope_checks(app_and_services: tuple[TestClient, Services]) -> None:
    client, services = app_and_services
    ok = client.get(
        "/probe", headers={"Authorization": f"Bearer {token(services, {'persons:read'})}"}
    )
    assert ok.status_code == 200 and ok.json() == {"subject": "clerk-1"}
    wrong = client.get(
        "/probe", headers={"Authorization": f"Bearer {token(services, {'cards:read'})}"}
    )
    assert wrong.status_code == 403
    assert wrong.headers["content-type"] == "application/problem+json"
    assert "persons:read" in wrong.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer a.b.c"],
)
def test_missing_or_malformed_tokens_are_401(
    app_and_services: tuple[TestClient, Services], header: str | None
) -> None:
    client, _ = app_and_services
    response = client.get("/probe", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


def test_expired_foreign_and_wrong_issuer_tokens_are_401(
    app_and_services: tuple[TestClient, Services],
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    client, services = app_and_services
    expired = token(services, {"persons:read"}, now=utcnow() - timedelta(hours=1))
    other_issuer = token(services, {"persons:read"}, issuer="https://evil.test")
    other_store = Services.from_settings(
        settings.model_copy(update={"key_dir": tmp_path_factory.mktemp("other") / "keys"})
    )
    other_store.keys.init(now=utcnow())
    foreign = token(other_store, {"persons:read"})
    for bad in (expired, other_issuer, foreign):
        response = client.get("/probe", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, response.json()

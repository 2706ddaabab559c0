"""Open entitlements by card, for counter terminals (``transactions:write``)."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from cardsvc.db.models import Entitlement
from cardsvc.services import Services
from tests.issuer.registry_helpers import assert_problem, bearer, client, enrol, issue, services
from tests.issuer.transaction_helpers import new_entitlement

__all__ = ["client", "services"]

TERMINAL = frozenset({"transactions:write"})


def test_a_terminal_sees_the_open_entitlements_of_a_card(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    later = new_entitlement(client, services, person["id"], period="2025-02")
    first = new_entitlement(client, services, person["id"], period="2025-01")
    done = new_entitlement(client, services, person["id"], period="2024-12")
    with Session(services.engine) as session:
        session.execute(update(Entitlement).where(Entitlement.id == uuid.UUID(done["id"]))
                        .values(state="stopped", stopped_reason="death"))  # fmt: skip
        session.commit()
    other = enrol(client, services)
    new_entitlement(client, services, other["id"], period="2025-01")

    path = f"/v1/cards/{card['card_number']}/open-entitlements"
    answer = client.get(path, headers=bearer(services, TERMINAL, subject="term-1"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["card_number"] == card["card_number"]
    assert [i["id"] for i in body["items"]] == [first["id"], later["id"]]
    assert set(body["items"][0]) == {"id", "benefit", "period", "amount_fen", "currency"}


def test_scope_and_unknown_card(client: TestClient, services: Services) -> None:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    path = f"/v1/cards/{card['card_number']}/open-entitlements"
    assert_problem(client.get(path), 401)
    assert_problem(client.get(path, headers=bearer(services, frozenset({"verify"}))), 403)
    assert_problem(client.get("/v1/cards/Z99999999/open-entitlements",
                              headers=bearer(services, TERMINAL)), 404)  # fmt: skip
    assert_problem(client.get("/v1/cards/not-a-card/open-entitlements",
                              headers=bearer(services, TERMINAL)), 404)  # fmt: skip

"""The holder's loss report from the wallet (device proof): a temporary loss report."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Holder, Phone, activate, active_holder, mint, verify
from tests.issuer.registry_helpers import assert_problem, bearer, registry_services


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings, services=services))


@pytest.fixture
def holder(client: TestClient, services: Services) -> Holder:
    return active_holder(client, services, name="王小明")


def report(client: TestClient, services: Services, ecard_id: str, phone: Phone | None) -> Any:
    path = f"/v1/ecards/{ecard_id}/loss-report"
    headers = {"DPoP": phone.proof(services, client, "POST", path)} if phone else {}
    return client.post(path, json={}, headers=headers)


def test_the_holder_suspends_the_card_and_the_e_card_follows(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    assert ecard["holder_name"] == "王小明"
    token = mint(client, services, ecard["ecard_id"], phone).json()["tokens"][0]["token"]

    answer = report(client, services, ecard["ecard_id"], phone)
    assert answer.status_code == 200, answer.json()
    assert answer.json()["card_status"] == "suspended"

    card = client.get(f"/v1/cards/{holder.card_number}", headers=bearer(services)).json()
    assert card["state"] == "suspended"
    events = client.get(f"/v1/cards/{holder.card_number}/events", headers=bearer(services))
    last = events.json()["items"][-1]
    assert last["action"] == "report_temporary_loss"
    assert last["actor"] == f"ecard:{ecard['ecard_id']}"
    assert assert_problem(verify(client, services, token), 422)["check"] == "card-suspended"
    assert assert_problem(mint(client, services, ecard["ecard_id"], phone), 409)

    again = assert_problem(report(client, services, ecard["ecard_id"], phone), 409)
    assert again["state"] == "suspended"


def test_only_the_bound_device_of_the_current_e_card_may_report(
    client: TestClient, services: Services, holder: Holder
) -> None:
    old_phone, new_phone = Phone(), Phone()
    old = activate(client, services, holder, old_phone)
    activate(client, services, holder, new_phone)  # binding a new device replaces the old

    missing = assert_problem(report(client, services, old["ecard_id"], None), 401)
    assert missing["reason"] == "proof-missing"
    foreign = assert_problem(report(client, services, old["ecard_id"], new_phone), 401)
    assert foreign["reason"] == "proof-key"
    assert_problem(report(client, services, old["ecard_id"], old_phone), 409)
    card = client.get(f"/v1/cards/{holder.card_number}", headers=bearer(services)).json()
    assert card["state"] == "active"

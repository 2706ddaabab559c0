"""Cardholder self-service: own transactions and entitlements, by device proof only."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cardsvc.core.transaction import Kind
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Holder, Phone, activate, active_holder
from tests.issuer.registry_helpers import assert_problem, client, services
from tests.issuer.test_transaction_batches import offline, outcomes, upload
from tests.issuer.transaction_helpers import FakeCard, new_entitlement, terminal

__all__ = ["client", "services"]


def get(client: TestClient, services: Services, phone: Phone, path: str, **query: Any) -> Any:
    return client.get(
        path, params=query, headers={"DPoP": phone.proof(services, client, "GET", path)}
    )


def pages(client: TestClient, services: Services, phone: Phone, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        answer = get(client, services, phone, path, **query)
        assert answer.status_code == 200, answer.json()
        items += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return items


def with_history(
    client: TestClient, services: Services, holder: Holder, periods: list[str]
) -> None:
    card = FakeCard(card_number=holder.card_number, person_id=holder.person_id, chip=holder.chip)
    t = terminal(client, services, f"counter {holder.card_number}")
    items = [
        offline(
            t, card, entitlement=new_entitlement(client, services, holder.person_id, period=p)["id"]
        )
        for p in periods
    ]
    items.append(offline(t, card, kind=Kind.FEE, amount=1200, reference="bill-1"))
    assert outcomes(upload(client, t, items)) == ["accepted"] * len(items)


def test_a_holder_sees_only_their_own_data_paged(client: TestClient, services: Services) -> None:
    alice, bob = active_holder(client, services), active_holder(client, services)
    alice_phone, bob_phone = Phone(), Phone()
    alice_ecard = activate(client, services, alice, alice_phone)["ecard_id"]
    bob_ecard = activate(client, services, bob, bob_phone)["ecard_id"]
    with_history(client, services, alice, ["2025-01", "2025-02", "2025-03"])
    with_history(client, services, bob, ["2025-01"])
    new_entitlement(client, services, alice.person_id, period="2025-04")  # still open

    transactions = pages(client, services, alice_phone, f"/v1/ecards/{alice_ecard}/transactions")
    assert len(transactions) == 4
    assert {t["type"] for t in transactions} == {"benefit", "fee"}
    assert len({t["id"] for t in transactions}) == 4
    entitlements = pages(client, services, alice_phone, f"/v1/ecards/{alice_ecard}/entitlements")
    assert sorted((e["period"], e["state"]) for e in entitlements) == [
        ("2025-01", "collected"), ("2025-02", "collected"), ("2025-03", "collected"),
        ("2025-04", "open"),
    ]  # fmt: skip
    assert {e["person_id"] for e in entitlements} == {alice.person_id}
    bob_rows = pages(client, services, bob_phone, f"/v1/ecards/{bob_ecard}/transactions")
    assert len(bob_rows) == 2

    # Bob's phone cannot read Alice's e-card, and no proof means no data.
    path = f"/v1/ecards/{alice_ecard}/transactions"
    foreign = get(client, services, bob_phone, path)
    assert foreign.status_code == 401
    assert foreign.json()["reason"] == "proof-key"  # not the key bound to this e-card
    assert client.get(path).json()["reason"] == "proof-missing"
    # A proof for another URL (the entitlements) does not open the transactions.
    other = alice_phone.proof(services, client, "GET", f"/v1/ecards/{alice_ecard}/entitlements")
    assert client.get(path, headers={"DPoP": other}).status_code == 401
    # A proof is one-time.
    proof = alice_phone.proof(services, client, "GET", path)
    assert client.get(path, headers={"DPoP": proof}).status_code == 200
    assert client.get(path, headers={"DPoP": proof}).status_code == 401


def test_an_unknown_ecard_and_a_bad_cursor(client: TestClient, services: Services) -> None:
    holder = active_holder(client, services)
    phone = Phone()
    ecard = activate(client, services, holder, phone)["ecard_id"]
    missing = "00000000-0000-4000-8000-000000000000"
    path = f"/v1/ecards/{missing}/entitlements"
    # As for a real e-card this phone is not bound to: no existence oracle.
    assert assert_problem(get(client, services, phone, path), 401)["reason"] == "proof-key"
    bad = get(client, services, phone, f"/v1/ecards/{ecard}/entitlements", cursor="nope")
    assert assert_problem(bad, 422)["detail"].startswith("invalid cursor")

"""``GET /v1/receipts/{code}``: a receipt's verification code checked at the issuer, on
SQLite and PostgreSQL. It says what the receipt says and nothing personal; an unknown
code differs from a known one only in the answer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.core.receiptcode import format_receipt_code, receipt_code
from cardsvc.core.transaction import Kind, SignedRecord
from cardsvc.services import Services
from tests.issuer.registry_helpers import assert_problem, client, services
from tests.issuer.test_transaction_batches import offline, upload
from tests.issuer.transaction_helpers import active_card, new_entitlement, signed, terminal

__all__ = ["client", "services"]


def _code(body: dict[str, Any]) -> str:
    return format_receipt_code(receipt_code(SignedRecord.from_json(body)))


def test_an_online_receipt_checks_out_without_anything_personal(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    t = terminal(client, services, name="社保大厅 3号窗口")
    entitlement = new_entitlement(client, services, card.person_id, amount=350_000)
    body = signed(client, t, card, entitlement=entitlement["id"], amount=350_000)
    stored = client.post("/v1/transactions", json=body,
                         headers=t.headers | {"Idempotency-Key": "r-1"})  # fmt: skip
    assert stored.status_code == 201, stored.json()
    code = _code(body)
    answer = client.get(f"/v1/receipts/{code}")
    assert answer.status_code == 200, answer.json()
    checked = answer.json()
    assert checked == {
        "code": code, "kind": "benefit", "amount_fen": 350_000, "currency": "CNY",
        "date": checked["date"], "time": checked["time"], "terminal": "社保大厅 3号窗口",
        "state": "accepted",
    }  # fmt: skip
    assert len(checked["date"]) == 10 and len(checked["time"]) == 5
    for personal in (card.card_number, card.person_id, entitlement["id"],
                     stored.json()["transaction_id"]):  # fmt: skip
        assert personal not in answer.text
    # As people type it: lower case, no hyphens, O for 0.
    typed = code.replace("-", " ").lower().replace("0", "o")
    assert client.get(f"/v1/receipts/{typed}").json() == checked


def test_an_offline_receipt_is_known_once_synced(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    item = offline(t, card, kind=Kind.FEE, amount=2_550, reference="bill-9")
    code = _code(item["record"])
    assert_problem(client.get(f"/v1/receipts/{code}"), 404)
    assert [r["outcome"] for r in upload(client, t, [item])["results"]] == ["accepted"]
    checked = client.get(f"/v1/receipts/{code}").json()
    assert (checked["kind"], checked["amount_fen"], checked["state"]) == ("fee", 2_550, "accepted")


def test_unknown_and_known_codes_differ_only_in_the_answer(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    body = signed(client, t, card, kind=Kind.FEE, amount=100, reference="b")
    stored = client.post("/v1/transactions", json=body,
                         headers=t.headers | {"Idempotency-Key": "r-2"})  # fmt: skip
    assert stored.status_code == 201
    known = client.get(f"/v1/receipts/{_code(body)}")
    unknown = client.get("/v1/receipts/0000-0000-0000")
    problem = assert_problem(unknown, 404)
    assert problem["type"].endswith("receipt-unknown")
    # The request id is fresh on every answer (cardsvc.api.observe), whatever it answers.
    ignore = {"content-length", "content-type", "x-request-id"}
    assert known.headers["x-request-id"] != unknown.headers["x-request-id"]
    assert {k: v for k, v in known.headers.items() if k not in ignore} == {
        k: v for k, v in unknown.headers.items() if k not in ignore
    }
    assert known.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("text", ["x", "0000-0000-000U", "0" * 13, "%00" * 5, "é" * 12])
def test_a_malformed_code_is_a_problem(client: TestClient, text: str) -> None:
    answer = client.get(f"/v1/receipts/{text}")
    problem = assert_problem(answer, 400)
    assert text not in problem["detail"]


def test_the_migration_gives_earlier_transactions_their_codes(
    client: TestClient, services: Services
) -> None:
    from sqlalchemy import inspect

    from cardsvc.db.migrate import downgrade, upgrade

    card = active_card(client, services)
    t = terminal(client, services)
    body = signed(client, t, card, kind=Kind.FEE, amount=700, reference="before-0011")
    stored = client.post("/v1/transactions", json=body,
                         headers=t.headers | {"Idempotency-Key": "r-3"})  # fmt: skip
    assert stored.status_code == 201
    code = _code(body)
    downgrade(services.engine, "0010")  # as stored before receipt codes
    columns = {c["name"] for c in inspect(services.engine).get_columns("transactions")}
    assert "receipt_code" not in columns and "receipt" in columns
    upgrade(services.engine)
    checked = client.get(f"/v1/receipts/{code}").json()
    assert (checked["code"], checked["amount_fen"]) == (code, 700)

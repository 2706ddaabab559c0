"""Online transactions: certificates, nonces, every check, Idempotency-Key, receipts."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import KeyPurpose, b64url_encode
from cardsvc.core.transaction import (
    RECEIPT_TYP,
    Kind,
    SignedRecord,
    TransactionData,
    verify_terminal_certificate,
)
from cardsvc.db.models import TransactionRow
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import AUDITOR, assert_problem, bearer, client, services
from tests.issuer.transaction_helpers import (
    active_card,
    new_entitlement,
    signed,
    terminal,
)

__all__ = ["client", "services"]


def _post(client: TestClient, headers: dict[str, str], body: dict[str, Any], key: str) -> Any:
    return client.post("/v1/transactions", json=body, headers=headers | {"Idempotency-Key": key})


def _ledger_rows(services: Services) -> int:
    with Session(services.engine) as session:
        return int(session.scalar(select(func.count()).select_from(TransactionRow)) or 0)


def test_terminal_certificate_binds_the_registered_key(
    client: TestClient, services: Services
) -> None:
    t = terminal(client, services)
    trusted = {
        k.key.kid: k.key
        for k in services.keys.trusted_keys(now=utcnow())
        if k.purpose is KeyPurpose.TERMINAL_CERTIFICATE
    }
    cert = verify_terminal_certificate(
        t.certificate,
        key_for=lambda h: trusted[h["kid"]],
        issuer=services.settings.issuer,
        now=utcnow(),
        leeway=timedelta(seconds=5),
    )
    assert cert.terminal_id == t.id and cert.key.kid == t.client.key.kid
    # An operator is not a terminal.
    assert_problem(client.post("/v1/terminal-certificates", headers=bearer(services)), 403)


def test_benefit_collection_pays_once_with_a_verifiable_receipt(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id, amount=350_000)
    body = signed(client, t, card, entitlement=entitlement["id"], amount=350_000)
    answer = _post(client, t.headers, body, "k-1")
    assert answer.status_code == 201, answer.json()
    result = answer.json()
    assert (result["type"], result["amount_fen"], result["card_counter"]) == ("benefit", 350_000, 1)
    key = next(
        k.key
        for k in services.keys.trusted_keys(now=utcnow())
        if k.purpose is KeyPurpose.TERMINAL_CERTIFICATE
    )
    receipt = verify_jws(result["receipt"], typ=RECEIPT_TYP, key_for=lambda _h: key)
    assert receipt.claims["sub"] == result["transaction_id"]
    assert receipt.claims["txn"]["entitlement"] == entitlement["id"]

    # The same request again replays the stored answer; nothing new in the ledger.
    replay = _post(client, t.headers, body, "k-1")
    assert replay.status_code == 201 and replay.json() == result
    assert replay.headers["Idempotent-Replayed"] == "true"
    # Another key, another nonce, the same entitlement: refused, never paid twice.
    second = signed(client, t, card, entitlement=entitlement["id"], amount=350_000)
    refused = assert_problem(_post(client, t.headers, second, "k-2"), 409)
    assert refused["type"].endswith("entitlement-unavailable")
    assert _ledger_rows(services) == 1

    views = client.get(f"/v1/persons/{card.person_id}/entitlements", headers=bearer(services))
    assert views.json()["items"][0]["state"] == "collected"
    history = client.get(
        f"/v1/persons/{card.person_id}/transactions", headers=bearer(services, AUDITOR)
    ).json()["items"]
    assert [(h["type"], h["state"], h["card_counter"]) for h in history] == [
        ("benefit", "accepted", 1)
    ]


def test_fee_and_identity(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    fee = signed(client, t, card, kind=Kind.FEE, amount=12_345, reference="bill/2025/77")
    assert _post(client, t.headers, fee, "fee").status_code == 201
    ident = signed(client, t, card, kind=Kind.IDENTITY, amount=0)
    answer = _post(client, t.headers, ident, "id")
    assert answer.status_code == 201 and answer.json()["card_counter"] == 2


def test_idempotency_key_rules(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    body = signed(client, t, card, kind=Kind.FEE, amount=100, reference="r1")
    assert_problem(client.post("/v1/transactions", json=body, headers=t.headers), 400)
    assert _post(client, t.headers, body, "same").status_code == 201
    other = signed(client, t, card, kind=Kind.FEE, amount=200, reference="r2")
    reused = assert_problem(_post(client, t.headers, other, "same"), 422)
    assert reused["type"].endswith("idempotency-key-reused")
    # A key of another terminal is its own.
    assert _post(client, t.headers, other, "other").status_code == 201


def test_in_flight_key_answers_409(client: TestClient, services: Services) -> None:
    t = terminal(client, services)
    card = active_card(client, services)
    body = signed(client, t, card, kind=Kind.FEE, amount=100, reference="r1")
    from cardsvc.api.routes.transactions import TransactionRequest
    from cardsvc.transactions.idempotency import request_hash

    digest = request_hash("POST", "/v1/transactions", TransactionRequest(**body).model_dump())
    services.idempotency.begin(t.id, "busy", digest, now=utcnow())
    assert assert_problem(_post(client, t.headers, body, "busy"), 409)["type"].endswith("in-flight")


@pytest.mark.parametrize(
    "tamper",
    ["card_signature", "terminal_signature", "data", "nonce", "certificate", "counter"],
)
def test_forged_or_replayed_records_are_refused(
    client: TestClient, services: Services, tamper: str
) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    body = signed(client, t, card, kind=Kind.FEE, amount=100, reference="r1")
    if tamper in ("card_signature", "terminal_signature"):
        raw = bytearray(SignedRecord.from_json(body).__getattribute__(tamper))
        raw[5] ^= 1
        body[tamper] = b64url_encode(bytes(raw))
    elif tamper == "data":
        data = TransactionData.from_bytes(SignedRecord.from_json(body).data)
        body["data"] = b64url_encode(TransactionData(**{**data.__dict__, "amount_fen": 1}).encode())
    elif tamper == "nonce":
        body["nonce"] = b64url_encode(b"\x00" * 16)
    elif tamper == "certificate":
        body["terminal_certificate"] = terminal(client, services, "other").certificate
    else:  # a record with an old counter: first accept one with counter 2, then replay 1
        later = signed(client, t, card, kind=Kind.FEE, amount=100, reference="r2")
        assert _post(client, t.headers, later, "later").status_code == 201
    answer = client.post(
        "/v1/transactions", json=body, headers=t.headers | {"Idempotency-Key": "x"}
    )
    assert answer.status_code in (409, 422), answer.json()
    assert _ledger_rows(services) == (1 if tamper == "counter" else 0)


def test_revoked_card_cannot_collect(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id)
    client.post(
        f"/v1/cards/{card.card_number}/status-changes",
        json={"action": "revoke", "reason": "test"},
        headers=bearer(services),
    )
    body = signed(client, t, card, entitlement=entitlement["id"])
    assert assert_problem(_post(client, t.headers, body, "k"), 422)["check"] == "card-status"


def test_fifty_concurrent_requests_with_one_key_make_one_ledger_entry(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id)
    body = signed(client, t, card, entitlement=entitlement["id"])
    statuses: list[int] = []
    barrier = threading.Barrier(50)

    def one() -> None:
        barrier.wait()
        statuses.append(_post(client, t.headers, body, "concurrent").status_code)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) <= [201, 409], statuses
    assert statuses.count(201) >= 1
    assert _ledger_rows(services) == 1


def _transaction_leaf(services: Services, transaction_id: str, kind: str) -> dict[str, Any]:
    import json

    index = services.audit.leaf_of(f"transaction:{transaction_id}", kind)
    assert index is not None
    leaf: dict[str, Any] = json.loads(services.audit.leaf_data(index))
    return leaf


def test_the_clerk_at_the_counter_is_in_the_audit_event(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id)
    body = signed(client, t, card, entitlement=entitlement["id"]) | {"clerk_id": "oper-0a1b2c3d"}
    answer = _post(client, t.headers, body, "with-clerk")
    assert answer.status_code == 201, answer.json()
    leaf = _transaction_leaf(services, answer.json()["transaction_id"], "transaction.benefit")
    assert leaf["data"]["clerk"] == "oper-0a1b2c3d"
    # The authenticated terminal stays the actor: the clerk is what the terminal says.
    assert leaf["actor"] == t.id
    # Without a clerk (the CLI counter): no clerk member.
    fee = signed(client, t, card, kind=Kind.FEE, amount=100, reference="b-1")
    plain = _post(client, t.headers, fee, "no-clerk")
    assert plain.status_code == 201
    leaf = _transaction_leaf(services, plain.json()["transaction_id"], "transaction.fee")
    assert "clerk" not in leaf["data"]


@pytest.mark.parametrize("clerk_id", ["", "x" * 65, "bad id", "a/b", 7])
def test_a_malformed_clerk_id_is_refused(
    client: TestClient, services: Services, clerk_id: object
) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    body = signed(client, t, card, kind=Kind.FEE, amount=100, reference="b-2")
    assert_problem(_post(client, t.headers, body | {"clerk_id": clerk_id}, "bad-clerk"), 422)
    assert _ledger_rows(services) == 0


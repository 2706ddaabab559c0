"""Offline batch sync: dedup, out-of-order, conflicts held for review, never paid twice."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.core.transaction import Kind, SignedRecord, TransactionData
from cardsvc.db.models import Entitlement, TransactionRow
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import client, services
from tests.issuer.transaction_helpers import (
    FakeCard,
    Terminal,
    active_card,
    new_entitlement,
    terminal,
)

__all__ = ["client", "services"]


def offline(
    t: Terminal, card: FakeCard, *, entitlement: str | None = None, amount: int = 350_000,
    kind: Kind = Kind.BENEFIT, reference: str | None = None, seq: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A record as an offline counter makes it: a terminal-drawn nonce, no challenge."""
    if seq is None:
        t.seq += 1
        seq = t.seq
    nonce = secrets.token_bytes(16)
    data = TransactionData(
        kind=kind, card=card.card_number, terminal=t.id, seq=seq,
        at=int(utcnow().timestamp()), amount_fen=amount,
        entitlement=uuid.UUID(entitlement) if entitlement else None, reference=reference,
    ).encode()  # fmt: skip
    counter, card_signature = card.sign(nonce, data)
    record = SignedRecord.sign(nonce=nonce, data=data, counter=counter,
                               card_signature=card_signature, terminal=t.signer)  # fmt: skip
    return {"seq": seq, "record": record.to_json()}


def upload(client: TestClient, t: Terminal, items: list[dict[str, Any]]) -> dict[str, Any]:
    answer = client.post(
        "/v1/transactions/batches",
        json={"terminal_certificate": t.certificate, "records": items},
        headers=t.headers,
    )
    assert answer.status_code == 200, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def outcomes(body: dict[str, Any]) -> list[str]:
    return [r["outcome"] for r in body["results"]]


def ledger(services: Services) -> tuple[int, int]:
    """(transaction rows, accepted rows)."""
    with Session(services.engine) as session:
        rows = session.scalar(select(func.count()).select_from(TransactionRow)) or 0
        accepted = (
            session.scalar(
                select(func.count())
                .select_from(TransactionRow)
                .where(TransactionRow.state == "accepted")
            )
            or 0
        )
    return int(rows), int(accepted)


def entitlement_state(services: Services, entitlement_id: str) -> str:
    with Session(services.engine) as session:
        row = session.get(Entitlement, uuid.UUID(entitlement_id))
        assert row is not None
        return row.state


def test_a_batch_twice_pays_once(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    e1 = new_entitlement(client, services, card.person_id, period="2025-01")
    e2 = new_entitlement(client, services, card.person_id, period="2025-02")
    items = [offline(t, card, entitlement=e1["id"]), offline(t, card, entitlement=e2["id"]),
             offline(t, card, kind=Kind.FEE, amount=1200, reference="bill-1")]  # fmt: skip
    first = upload(client, t, items)
    assert outcomes(first) == ["accepted"] * 3
    assert all(r["receipt"] for r in first["results"])
    assert first["journal"] == {"highest_seq": 3, "gap_count": 0, "gaps": []}
    again = upload(client, t, items)
    assert outcomes(again) == ["duplicate"] * 3
    assert [r["transaction_id"] for r in again["results"]] == [
        r["transaction_id"] for r in first["results"]
    ]
    assert ledger(services) == (3, 3)
    assert entitlement_state(services, e1["id"]) == "collected"


def test_batches_out_of_order_and_gaps(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    r1 = offline(t, card, kind=Kind.FEE, amount=100, reference="b1")
    r2 = offline(t, card, kind=Kind.FEE, amount=200, reference="b2")
    r4 = offline(t, card, kind=Kind.FEE, amount=400, reference="b4", seq=4)
    later = upload(client, t, [r4, r2])
    assert outcomes(later) == ["accepted", "accepted"]
    assert later["journal"]["gaps"] == [1, 3]
    done = upload(client, t, [r1, {"seq": 3, "void": "the card did not complete"}])
    assert outcomes(done) == ["accepted", "accepted"]
    assert done["journal"]["gap_count"] == 0
    # A record on a voided seq is a fork: held, not paid.
    fork = upload(client, t, [offline(t, card, kind=Kind.FEE, amount=5, reference="x", seq=3)])
    assert fork["results"][0]["outcome"] == "conflict"
    assert fork["results"][0]["reason"] == "fork"
    assert ledger(services) == (3, 3)


def test_two_offline_counters_collect_one_entitlement(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    a, b = terminal(client, services, "counter A"), terminal(client, services, "counter B")
    entitlement = new_entitlement(client, services, card.person_id)
    from_a = offline(a, card, entitlement=entitlement["id"])
    from_b = offline(b, card, entitlement=entitlement["id"])
    assert outcomes(upload(client, b, [from_b])) == ["accepted"]
    conflict = upload(client, a, [from_a])["results"][0]
    assert (conflict["outcome"], conflict["reason"]) == ("conflict", "entitlement")
    assert ledger(services) == (2, 1)  # the second is kept as evidence, not paid
    assert upload(client, a, [from_a])["results"][0]["outcome"] == "duplicate"
    assert ledger(services) == (2, 1)


def test_a_cloned_card_is_flagged(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    clone = FakeCard(card_number=card.card_number, person_id=card.person_id, chip=card.chip)
    a, b = terminal(client, services, "counter A"), terminal(client, services, "counter B")
    e1 = new_entitlement(client, services, card.person_id, period="2025-01")
    e2 = new_entitlement(client, services, card.person_id, period="2025-02")
    genuine = offline(a, card, entitlement=e1["id"])
    copied = offline(b, clone, entitlement=e2["id"])  # the same keys, the same counter 1
    assert outcomes(upload(client, a, [genuine])) == ["accepted"]
    result = upload(client, b, [copied])["results"][0]
    assert (result["outcome"], result["reason"]) == ("conflict", "counter-reused")
    assert entitlement_state(services, e2["id"]) == "open"  # not paid
    assert ledger(services) == (2, 1)


def test_fork_damaged_flag_and_bad_proofs(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    first = offline(t, card, kind=Kind.FEE, amount=100, reference="b1")
    assert outcomes(upload(client, t, [first])) == ["accepted"]
    other = offline(t, card, kind=Kind.FEE, amount=999, reference="b9", seq=1)
    flagged = offline(t, card, kind=Kind.FEE, amount=50, reference="b2", seq=2)
    forged = offline(t, card, kind=Kind.FEE, amount=70, reference="b3", seq=3)
    forged["record"]["card_signature"] = first["record"]["card_signature"]
    body = upload(client, t, [other, {**flagged, "flag": "journal-damaged"}, forged])
    assert [(r["outcome"], r["reason"]) for r in body["results"]] == [
        ("conflict", "fork"),
        ("conflict", "journal-damaged"),
        ("rejected", "card-signature"),
    ]
    assert ledger(services) == (2, 1)


def test_a_foreign_certificate_is_refused(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    a, b = terminal(client, services, "counter A"), terminal(client, services, "counter B")
    answer = client.post(
        "/v1/transactions/batches",
        json={"terminal_certificate": b.certificate,
              "records": [offline(a, card, kind=Kind.FEE, amount=1, reference="r")]},
        headers=a.headers,
    )  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["check"] == "terminal-certificate"


def test_an_offline_record_keeps_its_clerk_in_the_audit_event(
    client: TestClient, services: Services
) -> None:
    import json

    card = active_card(client, services)
    t = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id)
    item = offline(t, card, entitlement=entitlement["id"]) | {"clerk_id": "oper-99aa88bb"}
    body = upload(client, t, [item])
    assert outcomes(body) == ["accepted"]
    transaction_id = body["results"][0]["transaction_id"]
    index = services.audit.leaf_of(f"transaction:{transaction_id}", "transaction.benefit")
    assert index is not None
    leaf = json.loads(services.audit.leaf_data(index))
    assert (leaf["data"]["clerk"], leaf["actor"]) == ("oper-99aa88bb", t.id)
    bad = client.post("/v1/transactions/batches", headers=t.headers, json={
        "terminal_certificate": t.certificate,
        "records": [offline(t, card, amount=5, kind=Kind.FEE, reference="r") | {"clerk_id": "a b"}],
    })  # fmt: skip
    assert bad.status_code == 422

"""Review of sync conflicts and held forks: listed, paged, resolved once, audited."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.core.transaction import Kind
from cardsvc.db.models import audit_leaves
from cardsvc.services import Services
from tests.issuer.registry_helpers import AUDITOR, assert_problem, bearer, client, services
from tests.issuer.test_transaction_batches import ledger, offline, outcomes, upload
from tests.issuer.transaction_helpers import active_card, new_entitlement, terminal

__all__ = ["client", "services"]

PATH = "/v1/transactions/conflicts"


def auditor(services: Services) -> dict[str, str]:
    return bearer(services, AUDITOR, subject="auditor-1")


def conflicts(client: TestClient, services: Services) -> dict[str, list[str]]:
    """One entitlement collected at two offline counters, and a fork on counter A."""
    card = active_card(client, services)
    a, b = terminal(client, services, "counter A"), terminal(client, services, "counter B")
    entitlement = new_entitlement(client, services, card.person_id)
    assert outcomes(upload(client, b, [offline(b, card, entitlement=entitlement["id"])])) == [
        "accepted"
    ]
    first = offline(a, card, kind=Kind.FEE, amount=10, reference="r1")
    twice = offline(a, card, entitlement=entitlement["id"])
    fork = offline(a, card, kind=Kind.FEE, amount=99, reference="r9", seq=1)
    body = upload(client, a, [first, twice, fork])
    assert [(r["outcome"], r["reason"]) for r in body["results"]] == [
        ("accepted", None), ("conflict", "entitlement"), ("conflict", "fork")
    ]  # fmt: skip
    return {"a": [a.id], "b": [b.id]}


def pages(client: TestClient, services: Services, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 1, **query} | ({"cursor": cursor} if cursor else {})
        answer = client.get(PATH, params=params, headers=auditor(services))
        assert answer.status_code == 200, answer.json()
        items += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return items


def test_list_resolve_once_and_audit(client: TestClient, services: Services) -> None:
    terminals = conflicts(client, services)
    listed = pages(client, services)
    assert sorted((i["kind"], i["reason"]) for i in listed) == [
        ("hold", "fork"), ("transaction", "entitlement")
    ]  # fmt: skip
    assert all(i["review"] is None and i["terminal_id"] == terminals["a"][0] for i in listed)
    conflict = next(i for i in listed if i["kind"] == "transaction")
    assert conflict["detail"]

    # Clerks read transactions but do not review them.
    assert client.get(PATH, headers=bearer(services)).status_code == 403

    url = f"{PATH}/{conflict['ref']}/resolution"
    decision = {"decision": "refused", "reason": "collected at counter B the same day"}
    done = client.post(url, json=decision, headers=auditor(services))
    assert done.status_code == 201, done.json()
    review = done.json()["review"]
    assert (review["decision"], review["reviewed_by"]) == ("refused", "auditor-1")
    again = client.post(url, json=decision | {"decision": "cleared"}, headers=auditor(services))
    assert assert_problem(again, 409)["ref"] == conflict["ref"]
    assert ledger(services) == (3, 2)  # a decision never pays: the conflict row stays unpaid

    # The decision is in the audit log, at the index the review names.
    with Session(services.engine) as session:
        leaf = session.execute(
            select(audit_leaves).where(audit_leaves.c.idx == review["audit_index"])
        ).one()
    assert leaf.kind == "transaction.review.refused"
    assert leaf.subject == f"transaction:{conflict['transaction_id']}"
    stored = json.loads(leaf.data)
    data = stored.get("data", stored)  # the leaf input, or just its data
    assert data["ref"] == conflict["ref"] and "reason" not in data  # free text only hashed
    assert "row" in data

    open_now = pages(client, services)
    assert [i["kind"] for i in open_now] == ["hold"]
    resolved = pages(client, services, state="resolved")
    assert [i["ref"] for i in resolved] == [conflict["ref"]]
    assert len(pages(client, services, state="all")) == 2
    one = client.get(f"{PATH}/{open_now[0]['ref']}", headers=auditor(services))
    assert one.status_code == 200 and one.json()["reason"] == "fork"
    hold = client.post(f"{PATH}/{open_now[0]['ref']}/resolution",
                       json={"decision": "cleared", "reason": "a terminal bug, reviewed"},
                       headers=auditor(services))  # fmt: skip
    assert hold.status_code == 201
    assert pages(client, services) == []


def test_unknown_and_malformed_refs(client: TestClient, services: Services) -> None:
    body = {"decision": "refused", "reason": "x"}
    missing = f"{PATH}/t:00000000-0000-4000-8000-000000000000/resolution"
    assert client.post(missing, json=body, headers=auditor(services)).status_code == 404
    assert client.post(f"{PATH}/h:{'0' * 64}/resolution", json=body,
                       headers=auditor(services)).status_code == 404  # fmt: skip
    bad = client.post(f"{PATH}/nonsense/resolution", json=body, headers=auditor(services))
    assert bad.status_code == 422
    assert client.get(PATH, params={"cursor": "bad"}, headers=auditor(services)).status_code == 422
    no_reason = client.post(missing, json={"decision": "refused"}, headers=auditor(services))
    assert no_reason.status_code == 422

"""The per-terminal sync state: gaps stay right as the contiguous prefix moves."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cardsvc.core.transaction import Kind
from cardsvc.db.models import TerminalJournal
from cardsvc.services import Services
from tests.issuer.registry_helpers import client, services
from tests.issuer.test_transaction_batches import offline, outcomes, upload
from tests.issuer.transaction_helpers import active_card, terminal

__all__ = ["client", "services"]


def state(services: Services, terminal_id: str) -> tuple[int, int] | None:
    with Session(services.engine) as session:
        row = session.scalar(
            select(TerminalJournal).where(TerminalJournal.terminal_id == terminal_id)
        )
        return None if row is None else (row.contiguous, row.highest)


def test_gaps_follow_the_contiguous_prefix(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    r = {
        seq: offline(t, card, kind=Kind.FEE, amount=10, reference=f"b{seq}", seq=seq)
        for seq in range(1, 9)
    }
    body = upload(client, t, [r[1], r[2], r[5], r[7]])
    assert body["journal"] == {"highest_seq": 7, "gap_count": 3, "gaps": [3, 4, 6]}
    assert state(services, t.id) == (2, 7)
    body = upload(client, t, [r[4], {"seq": 3, "void": "torn"}])
    assert body["journal"] == {"highest_seq": 7, "gap_count": 1, "gaps": [6]}
    assert state(services, t.id) == (5, 7)
    # A held fork fills its seq too (it is evidence, not a hole).
    other = offline(t, card, reference="other", seq=6, kind=Kind.FEE, amount=99)
    assert outcomes(upload(client, t, [r[6]])) == ["accepted"]
    assert outcomes(upload(client, t, [other])) == ["conflict"]
    body = upload(client, t, [r[8]])
    assert body["journal"] == {"highest_seq": 8, "gap_count": 0, "gaps": []}
    assert state(services, t.id) == (8, 8)


def test_a_huge_jump_is_counted_not_enumerated(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)
    far = offline(t, card, kind=Kind.FEE, amount=1, reference="far", seq=10**12)
    body = upload(client, t, [far])
    assert body["journal"]["gap_count"] == 10**12 - 1
    assert body["journal"]["gaps"][:3] == [1, 2, 3]
    assert len(body["journal"]["gaps"]) == 100


def test_history_without_state_is_computed_once(client: TestClient, services: Services) -> None:
    """A database upgraded with history has no state rows: the first batch builds it."""
    card = active_card(client, services)
    t = terminal(client, services)
    items = [offline(t, card, kind=Kind.FEE, amount=1, reference=f"h{i}") for i in range(5)]
    upload(client, t, items[:2] + items[3:])
    with Session(services.engine) as session, session.begin():
        session.execute(delete(TerminalJournal))
    body = upload(client, t, [items[0]])  # a duplicate: nothing new, the state is rebuilt
    assert body["journal"] == {"highest_seq": 5, "gap_count": 1, "gaps": [3]}
    assert state(services, t.id) == (2, 5)

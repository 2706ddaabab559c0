"""Cards: issue, personalization of a blank chip, and the database's one-live-card rule."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, column, insert, select, table, text
from sqlalchemy.exc import IntegrityError, StatementError

from cardsvc.core.carddoc import verify_card_document
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.trustlist import TrustList
from cardsvc.db.models import Card
from cardsvc.db.states import CardState
from cardsvc.registry.errors import LiveCardExistsError
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    AUDITOR,
    assert_problem,
    bearer,
    chip_jwk,
    client,
    enrol,
    issue,
    services,
)

__all__ = ["client", "services"]


def trust_list(services: Services) -> TrustList:
    now = utcnow()
    token = services.keys.issue_trust_list(now=now)
    return TrustList.verify(
        token, root=services.keys.root_key(), now=now, leeway=timedelta(seconds=5)
    )


def test_issue_then_personalize_gives_a_verifiable_document(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services, name="赵六")
    card = issue(client, services, person["id"])
    assert card["state"] == "pending_personalization" and not card["personalized"]
    assert len(card["card_number"]) == 9
    assert card["status"]["uri"] == "https://issuer.test/v1/status-lists/0"
    assert 0 <= card["status"]["idx"] < 131_072
    issued, expires = card["issue_date"], card["expiry_date"]
    assert int(expires[:4]) - int(issued[:4]) == 10

    # Not usable before personalization: no document, no lifecycle changes.
    number = card["card_number"]
    no_doc = client.get(f"/v1/cards/{number}/document", headers=bearer(services))
    assert_problem(no_doc, 422)
    early = client.post(
        f"/v1/cards/{number}/status-changes",
        json={"action": "report_temporary_loss", "reason": "lost"},
        headers=bearer(services),
    )
    assert "not personalized" in assert_problem(early, 409)["detail"]

    jwk = chip_jwk()
    response = client.post(
        f"/v1/cards/{number}/personalization", json={"chip_jwk": jwk}, headers=bearer(services)
    )
    assert response.status_code == 200, response.json()
    result = response.json()
    assert result["card"]["state"] == "active" and result["card"]["personalized"]
    doc = verify_card_document(
        result["document"],
        trust_list=trust_list(services),
        now=utcnow(),
        leeway=timedelta(seconds=5),
        issuer="https://issuer.test",
    )
    assert str(doc.card_number) == number and doc.name == "赵六"
    assert str(doc.citizen_id) == person["citizen_id"]
    assert doc.chip_key.kid == VerifyingKey.from_jwk(jwk).kid
    assert doc.status.idx == card["status"]["idx"] and doc.status.uri == card["status"]["uri"]

    # A terminal whose chip write failed resubmits the same key: same document.
    retry = client.post(
        f"/v1/cards/{number}/personalization", json={"chip_jwk": jwk}, headers=bearer(services)
    )
    assert retry.status_code == 200 and retry.json()["document"] == result["document"]
    stored = client.get(f"/v1/cards/{number}/document", headers=bearer(services)).json()
    assert stored["document"] == result["document"]
    # Another key for an active card is an illegal transition; a chip key is one card's.
    other = client.post(
        f"/v1/cards/{number}/personalization",
        json={"chip_jwk": chip_jwk()},
        headers=bearer(services),
    )
    assert_problem(other, 409)
    second = issue(client, services, enrol(client, services)["id"])
    reused = client.post(
        f"/v1/cards/{second['card_number']}/personalization",
        json={"chip_jwk": jwk},
        headers=bearer(services),
    )
    assert_problem(reused, 409)


def test_bad_chip_keys_are_422(client: TestClient, services: Services) -> None:
    card = issue(client, services, enrol(client, services)["id"])
    url = f"/v1/cards/{card['card_number']}/personalization"
    private = chip_jwk() | {"d": "AAAA"}
    for jwk in ({}, {"kty": "RSA"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, private):
        assert_problem(client.post(url, json={"chip_jwk": jwk}, headers=bearer(services)), 422)


def test_second_issue_is_409_naming_the_live_card(client: TestClient, services: Services) -> None:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    again = client.post(f"/v1/persons/{person['id']}/cards", headers=bearer(services))
    assert assert_problem(again, 409)["existing_card_number"] == card["card_number"]
    cards = client.get(f"/v1/persons/{person['id']}/cards", headers=bearer(services, AUDITOR))
    assert [c["card_number"] for c in cards.json()["items"]] == [card["card_number"]]
    assert_problem(client.post(f"/v1/persons/{uuid.uuid4()}/cards", headers=bearer(services)), 404)
    assert_problem(client.get("/v1/cards/NOSUCHONE", headers=bearer(services)), 404)
    assert_problem(client.get("/v1/cards/not-a-number!", headers=bearer(services)), 404)


def test_auditor_reads_but_cannot_issue(client: TestClient, services: Services) -> None:
    person = enrol(client, services)
    response = client.post(f"/v1/persons/{person['id']}/cards", headers=bearer(services, AUDITOR))
    assert "cards:write" in assert_problem(response, 403)["detail"]


def test_two_clerks_issuing_at_once_make_exactly_one_card(services: Services) -> None:
    from cardsvc.core.identity import CitizenId
    from cardsvc.registry.persons import Enrolment
    from tests.issuer.registry_helpers import unique_citizen_id

    for _round in range(4):
        person = services.persons.enrol(
            Enrolment(citizen_id=CitizenId.parse(unique_citizen_id()), name="并发"),
            actor="clerk-0",
            now=utcnow(),
        )
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def clerk(
            name: str,
            person_id: uuid.UUID = person.id,
            barrier: threading.Barrier = barrier,
            outcomes: list[object] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                outcomes.append(services.cards.issue(person_id, actor=name, now=utcnow()))
            except LiveCardExistsError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=clerk, args=(f"clerk-{i}",)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        cards = [o for o in outcomes if isinstance(o, Card)]
        refused = [o for o in outcomes if isinstance(o, LiveCardExistsError)]
        assert (len(cards), len(refused)) == (1, 1), outcomes
        assert len(services.cards.list(person_id=person.id, after=None, limit=10)) == 1


def test_database_enforces_one_live_card_and_unique_numbers(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    now = utcnow()
    row = {
        "id": uuid.uuid4(),
        "card_number": "Z00000001",
        "person_id": uuid.UUID(person["id"]),
        "state": "active",
        "issue_date": now.date(),
        "expiry_date": now.date() + timedelta(days=3650),
        "status_shard": 0,
        "status_idx": (card["status"]["idx"] + 1) % 131_072,
        "created_at": now,
        "created_by": "test",
        "updated_at": now,
    }
    variants = [
        row,  # a second live card for the person
        row | {"state": "revoked", "card_number": card["card_number"]},  # duplicate number
        row | {"state": "revoked", "status_idx": card["status"]["idx"]},  # duplicate index
    ]
    for values in variants:
        with pytest.raises(IntegrityError), services.engine.begin() as conn:
            conn.execute(insert(Card).values(**values))
    # An unknown state: the column type refuses to send it, and the database refuses it
    # from a writer that goes around the type (a plain string column).
    lost = row | {"state": "lost"}
    with (
        pytest.raises(StatementError, match="'lost' is not among"),
        services.engine.begin() as conn,
    ):
        conn.execute(insert(Card).values(**lost))
    untyped = table(
        "cards",
        *(
            column(name, String() if name == "state" else Card.__table__.c[name].type)
            for name in row
        ),
    )
    with pytest.raises(IntegrityError), services.engine.begin() as conn:
        conn.execute(insert(untyped).values(**lost))
    with services.engine.begin() as conn:  # a revoked card beside the live one is fine
        conn.execute(insert(Card).values(**(row | {"state": "revoked"})))


def test_card_state_is_stored_as_its_plain_value_and_read_as_the_enum(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    with services.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT state FROM cards WHERE card_number = :n"), {"n": card["card_number"]}
        ).scalar_one()
        row = conn.execute(
            select(Card.state).where(Card.card_number == card["card_number"])
        ).scalar_one()
    assert type(stored) is str
    assert stored == "pending_personalization"
    assert row is CardState.PENDING_PERSONALIZATION
    assert card["state"] == "pending_personalization"

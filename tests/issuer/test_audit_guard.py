"""One typed audit path: the flush guard refuses an audited row without its event, and
the actor is checked once, where the caller is authenticated."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cardsvc.audit.events import Actor, AuditEvent, AuditKind, InvalidActorError
from cardsvc.audit.guard import MissingAuditEventError
from cardsvc.audit.log import append
from cardsvc.auth.tokens import issue_access_token
from cardsvc.db.models import Card, CardEvent, Person, PersonChange, audit_leaves
from cardsvc.db.session import write_session
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    CLERK,
    assert_problem,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    services,
    unique_citizen_id,
)

__all__ = ["client", "services"]


def count(services: Services, model: type[object]) -> int:
    with services.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def name_change(person_id: str) -> PersonChange:
    return PersonChange(
        person_id=uuid.UUID(person_id),
        field="name",
        old_value="张三",
        new_value="李四",
        reason="typo",
        actor="clerk-1",
        at=utcnow(),
    )


def test_a_card_event_without_its_audit_event_is_refused(
    client: TestClient, services: Services
) -> None:
    card = issue(client, services, enrol(client, services)["id"])
    events, leaves = count(services, CardEvent), services.audit.size()
    with pytest.raises(MissingAuditEventError) as caught, write_session(services.engine) as s:
        row = s.scalar(select(Card).where(Card.card_number == card["card_number"]))
        assert row is not None
        s.add(
            CardEvent(card_id=row.id, person_id=row.person_id, action="revoke",
                      from_state=row.state, to_state="revoked", reason="forgot the leaf",
                      actor="clerk-1", at=utcnow())
        )  # fmt: skip
    assert caught.value.rows and caught.value.rows[0].startswith("card_events")
    assert count(services, CardEvent) == events and services.audit.size() == leaves


def test_a_person_change_with_an_event_for_another_row_is_refused(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    changes = count(services, PersonChange)
    with pytest.raises(MissingAuditEventError), write_session(services.engine) as s:
        change = name_change(person["id"])
        s.add(change)
        s.flush()
        # An event is appended, but it names no row: the change is still owed one.
        append(
            s,
            AuditEvent(kind=AuditKind.PERSON_NAME, subject=f"person:{person['id']}"),
            actor=Actor("clerk-1"),
            now=utcnow(),
        )
    assert count(services, PersonChange) == changes


def test_a_chip_binding_changed_without_its_event_is_refused(
    client: TestClient, services: Services
) -> None:
    card = issue(client, services, enrol(client, services)["id"])
    personalize(client, services, card["card_number"])
    with pytest.raises(MissingAuditEventError), write_session(services.engine) as s:
        row = s.scalar(select(Card).where(Card.card_number == card["card_number"]))
        assert row is not None
        row.chip_kid = "attacker-kid"


def test_the_same_write_with_its_event_commits(client: TestClient, services: Services) -> None:
    person = enrol(client, services)
    with write_session(services.engine) as s:
        change = name_change(person["id"])
        s.add(change)
        s.flush()
        append(
            s,
            AuditEvent(
                kind=AuditKind.PERSON_NAME,
                subject=f"person:{person['id']}",
                data={"change": change.id},
                row=change,
            ),
            actor=Actor("clerk-1"),
            now=utcnow(),
        )
    assert count(services, PersonChange) == 1


@pytest.mark.parametrize("name", ["", " clerk", "clerk\n", "a\x00b", "x" * 129])
def test_an_actor_is_checked_when_made(name: str) -> None:
    with pytest.raises(InvalidActorError):
        Actor(name)


def test_a_token_whose_subject_cannot_be_an_actor_is_not_authenticated(
    client: TestClient, services: Services
) -> None:
    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject="clerk\u202e1",  # a bidirectional override: no place in a log
        kind="operator",
        scopes=CLERK,
        now=services.clock(),
    )
    refused = client.post(
        "/v1/persons",
        json={"citizen_id": unique_citizen_id(), "name": "张三"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(refused, 401)
    long_name = "c" * 128  # the longest actor is kept whole, not truncated
    person = client.post(
        "/v1/persons",
        json={"citizen_id": unique_citizen_id(), "name": "张三"},
        headers=bearer(services, subject=long_name),
    )
    assert person.status_code == 201, person.json()
    with services.engine.connect() as conn:
        created_by = conn.scalar(
            select(Person.created_by).where(Person.id == uuid.UUID(person.json()["id"]))
        )
        leaf_actor = conn.scalar(
            select(audit_leaves.c.data).where(
                audit_leaves.c.subject == f"person:{person.json()['id']}"
            )
        )
    assert created_by == long_name
    assert json.loads(leaf_actor)["actor"] == long_name

"""Small calls the registry makes to put its changes in the audit log (same transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.audit.log import append
from cardsvc.audit.rows import card_event_row, chip_binding_row, person_change_row, person_row
from cardsvc.db.models import Card, CardEvent, Person, PersonChange


def person_enrolled(session: Session, person: Person, *, actor: Actor, now: datetime) -> int:
    session.flush()
    return append(
        session,
        AuditEvent(
            kind=AuditKind.PERSON_ENROLLED,
            subject=f"person:{person.id}",
            commit=person_row(person, name=person.name),
            row=person,
        ),
        actor=actor,
        now=now,
    )


def pending_person_changes(session: Session, *, actor: Actor, now: datetime) -> list[int]:
    """Append a leaf for every person change added to ``session`` and not yet flushed."""
    pending = sorted(
        (obj for obj in session.new if isinstance(obj, PersonChange)), key=lambda c: c.at
    )
    session.flush()
    return [
        append(
            session,
            AuditEvent(
                kind=AuditKind.person_change(change.field),
                subject=f"person:{change.person_id}",
                data={"change": change.id},
                commit=person_change_row(change),
                row=change,
            ),
            actor=actor,
            now=now,
        )
        for change in pending
    ]


def card_event(
    session: Session, event: CardEvent, card: Card, *, actor: Actor, now: datetime
) -> int:
    """A card event (``event`` added to ``session``), with the card's fixed fields."""
    session.flush()
    return append(
        session,
        AuditEvent(
            kind=AuditKind.card(event.action),
            subject=f"card:{card.id}",
            data={"event": event.id, "from": event.from_state, "to": event.to_state},
            commit=card_event_row(event, card),
            row=event,
        ),
        actor=actor,
        now=now,
    )


def chip_bound(session: Session, card: Card, *, actor: Actor, now: datetime) -> int:
    """The chip key and signed document of a personalized card."""
    session.flush()
    return append(
        session,
        AuditEvent(
            kind=AuditKind.CARD_CHIP_BOUND,
            subject=f"card:{card.id}",
            data={"chip_kid": card.chip_kid},
            commit=chip_binding_row(card),
            row=card,
        ),
        actor=actor,
        now=now,
    )

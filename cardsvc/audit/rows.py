"""What each audited business row commits to (shared by the writers and the verifier).

Only fields that never change after the row is written are committed; fields that do
change (a card's state, a person's name) are checked against the chain of events.
"""

from __future__ import annotations

from typing import Any

from cardsvc.db.models import Card, CardEvent, Person, PersonChange


def card_fields(card: Card) -> dict[str, Any]:
    return {
        "id": card.id,
        "card_number": card.card_number,
        "person_id": card.person_id,
        "issue_date": card.issue_date,
        "expiry_date": card.expiry_date,
        "status_shard": card.status_shard,
        "status_idx": card.status_idx,
        "replaces_card_id": card.replaces_card_id,
        "created_by": card.created_by,
    }


def card_event_row(event: CardEvent, card: Card) -> dict[str, Any]:
    """A card event, with the card's fixed fields (so every event pins them too)."""
    return {
        "event": {
            "id": event.id,
            "card_id": event.card_id,
            "action": event.action,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "reason": event.reason,
            "actor": event.actor,
            "at": event.at,
        },
        "card": card_fields(card),
    }


def chip_binding_row(card: Card) -> dict[str, Any]:
    return {"card_id": card.id, "chip_kid": card.chip_kid, "document": card.document}


def person_row(person: Person, *, name: str) -> dict[str, Any]:
    """A person as enrolled (``name``: the name at enrolment)."""
    return {
        "id": person.id,
        "citizen_id": person.citizen_id,
        "name": name,
        "sex": person.sex,
        "birth_date": person.birth_date,
        "region_code": person.region_code,
        "created_by": person.created_by,
    }


def person_change_row(change: PersonChange) -> dict[str, Any]:
    return {
        "id": change.id,
        "person_id": change.person_id,
        "field": change.field,
        "old_value": change.old_value,
        "new_value": change.new_value,
        "reason": change.reason,
        "actor": change.actor,
        "at": change.at,
    }

"""Apply a lifecycle rule to a card row inside a transaction, recording the event."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cardsvc.audit import hooks as audit_hooks
from cardsvc.audit import log as audit_log
from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.db.models import LIVE_STATES, Card, CardEvent, ECard
from cardsvc.db.states import ECardState
from cardsvc.registry.lifecycle import FINAL, Action, CardState, transition

#: Why a card was revoked, by the action that revoked it.
REVOCATION_REASONS = {
    Action.REPORT_LOSS: "formal_loss",
    Action.REVOKE: "revoked",
    Action.REISSUE: "reissued",
    Action.HOLDER_DECEASED: "holder_deceased",
}

#: A committed change to publish: (shard, idx, new state).
Change = tuple[int, int, CardState]


def record_event(
    session: Session,
    card: Card,
    *,
    action: Action,
    from_state: CardState | None,
    reason: str,
    actor: Actor,
    now: datetime,
) -> int:
    """Record the event and its audit leaf in the same transaction; return the leaf index."""
    event = CardEvent(
        card_id=card.id,
        person_id=card.person_id,
        action=action.value,
        from_state=from_state,
        to_state=card.state,
        reason=reason,
        actor=actor,
        at=now,
    )
    session.add(event)
    return audit_hooks.card_event(session, event, card, actor=actor, now=now)


def apply(
    session: Session,
    card: Card,
    action: Action,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
    lapse_after: timedelta | None = None,
) -> Change:
    """Move ``card`` by ``action`` (or raise :class:`IllegalTransitionError`) and record it."""
    state = card.state
    rule = transition(action, state, revocation_reason=card.revocation_reason)
    card.state = rule.to
    card.updated_at = now
    if rule.to is CardState.SUSPENDED:
        card.suspended_until = now + lapse_after if lapse_after is not None else None
    else:
        card.suspended_until = None
    if rule.to is CardState.REVOKED:
        card.revocation_reason = REVOCATION_REASONS.get(action, action.value)
    if rule.to in FINAL:
        # The card's e-cards end with it (their status entries flip with the card's).
        ended = session.scalars(
            update(ECard)
            .where(ECard.card_id == card.id, ECard.state == ECardState.ACTIVE)
            .values(state=ECardState.REVOKED, updated_at=now)
            .returning(ECard.id)
        ).all()
        for ecard_id in ended:
            audit_log.append(
                session,
                AuditEvent(
                    kind=AuditKind.ECARD_REVOKED,
                    subject=f"ecard:{ecard_id}",
                    data={"card": str(card.id), "because": action.value},
                ),
                actor=actor,
                now=now,
            )
    record_event(
        session, card, action=action, from_state=state, reason=reason, actor=actor, now=now
    )
    return card.status_shard, card.status_idx, rule.to


def revoke_live_cards(
    session: Session, person_id: uuid.UUID, *, reason: str, actor: Actor, now: datetime
) -> list[Change]:
    """Revoke every live card of a person whose death was recorded."""
    cards = session.scalars(
        select(Card)
        .where(Card.person_id == person_id, Card.state.in_(LIVE_STATES))
        .with_for_update()
    ).all()
    return [
        apply(session, card, Action.HOLDER_DECEASED, reason=reason, actor=actor, now=now)
        for card in cards
    ]

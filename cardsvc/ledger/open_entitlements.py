"""What a counter may see of the ledger: the open entitlements of a card's holder."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Engine, select

from cardsvc.db.models import Entitlement
from cardsvc.db.states import EntitlementState
from cardsvc.registry.db import read_session

#: A holder has at most a few open periods at a time; this bounds the answer regardless.
MAX_OPEN = 100


def open_entitlements(engine: Engine, person_id: uuid.UUID) -> Sequence[Entitlement]:
    """The person's open entitlements, oldest period first (at most :data:`MAX_OPEN`)."""
    with read_session(engine) as session:
        return session.scalars(
            select(Entitlement)
            .where(Entitlement.person_id == person_id, Entitlement.state == EntitlementState.OPEN)
            .order_by(Entitlement.period, Entitlement.benefit, Entitlement.id)
            .limit(MAX_OPEN)
        ).all()

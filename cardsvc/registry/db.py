"""Constraint names, the same on SQLite and PostgreSQL, and paging a person's rows.

The sessions live in :mod:`cardsvc.db.session` (re-exported here for the registry's
callers).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from cardsvc.db.models import Person
from cardsvc.db.session import read_session, write_session

# SQLite names the columns of a failed unique constraint, PostgreSQL names the constraint.
_SQLITE_UNIQUE = {
    "persons.citizen_id": "uq_persons_citizen_id",
    "cards.card_number": "uq_cards_card_number",
    "cards.status_shard, cards.status_idx": "uq_cards_status_index",
    "cards.person_id": "uq_cards_one_live_per_person",
    "cards.chip_kid": "uq_cards_chip_kid",
    "cards.request_key": "uq_cards_request_key",
    "status_shards.shard": "status_shards_pkey",
}


def violated_constraint(exc: IntegrityError) -> str:
    """The name of the unique constraint ``exc`` violated, or ``""``."""
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str):
        return name
    message = str(exc.orig)
    prefix = "UNIQUE constraint failed: "
    if message.startswith(prefix):
        return _SQLITE_UNIQUE.get(message[len(prefix) :].strip(), message)
    return ""


__all__ = ["read_session", "rows_of_person", "violated_constraint", "write_session"]

R = TypeVar("R")


def rows_of_person(
    engine: Engine,
    model: type[R],
    columns: tuple[InstrumentedAttribute[uuid.UUID], InstrumentedAttribute[uuid.UUID]],
    person_id: uuid.UUID,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[R]:
    """One page of a person's rows of ``model``, oldest id first (keyset paging after
    ``after``); ``columns`` are the model's (person id, id). An unknown person raises
    :class:`PersonNotFoundError` rather than answering an empty page."""
    from cardsvc.registry.errors import PersonNotFoundError

    person_column, id_column = columns
    query = select(model).where(person_column == person_id).order_by(id_column).limit(limit)
    if after is not None:
        query = query.where(id_column > after)
    with read_session(engine) as session:
        if session.get(Person, person_id) is None:
            raise PersonNotFoundError("no such person", person_id=str(person_id))
        return session.scalars(query).all()

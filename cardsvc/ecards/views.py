"""What minting and verifying need about one e-card, read once and cached.

An e-card's view never changes once bound (only its state does, and a replaced e-card
is dropped from the cache by the activation that replaced it); its live status comes
from the in-memory status lists.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Engine, select

from cardsvc.core.carddoc import CHINA_TZ
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.qrtoken import Attribute
from cardsvc.core.statuslist import Status
from cardsvc.db.models import Card, ECard, Person
from cardsvc.db.states import ECardState
from cardsvc.ecards.errors import ECardNotFoundError
from cardsvc.registry.db import read_session
from cardsvc.registry.status import StatusLists

_VIEW_CACHE = 100_000


@dataclass(frozen=True, kw_only=True)
class ECardView:
    """What minting and verifying need about one e-card (immutable once bound)."""

    id: uuid.UUID
    ref: bytes
    state: ECardState
    person_id: uuid.UUID
    card_number: str
    status: tuple[int, int]
    card_status: tuple[int, int]
    device_key: VerifyingKey
    attributes: Mapping[Attribute, object]
    card_expiry: date | None = None


def china_date(now: datetime) -> date:
    return now.astimezone(CHINA_TZ).date()


def _age(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def holder_attributes(person: Person, card: Card, *, now: datetime) -> dict[Attribute, object]:
    """Every attribute a token may disclose; each purpose takes only its own subset."""
    age = _age(person.birth_date, china_date(now))
    attrs: dict[Attribute, object] = {
        Attribute.NAME: person.name,
        Attribute.ID_NO: person.citizen_id,
        Attribute.PHOTO_REF: hashlib.sha256(b"photo:" + person.id.bytes).digest()[:16],
        Attribute.INSURED_REGION: person.region_code,
        # Senior concession (1) from 60; 0: none. Valid as long as the card.
        Attribute.CONCESSION: 1 if age >= 60 else 0,
        Attribute.CONCESSION_UNTIL: card.expiry_date,
    }
    over = [threshold for threshold in (70, 65, 60) if age >= threshold]
    if over:
        attrs[Attribute.AGE_OVER] = over[0]
    return attrs


def view_of(ecard: ECard, person: Person, card: Card, *, now: datetime) -> ECardView:
    return ECardView(
        id=ecard.id,
        ref=bytes.fromhex(ecard.ref),
        state=ecard.state,
        person_id=person.id,
        card_number=card.card_number,
        status=(ecard.status_shard, ecard.status_idx),
        card_status=(card.status_shard, card.status_idx),
        device_key=VerifyingKey.from_jwk(json.loads(ecard.device_jwk)),
        attributes=holder_attributes(person, card, now=now),
        card_expiry=card.expiry_date,
    )


class ECardDirectory:
    """E-cards by id or token reference, and their live status."""

    def __init__(self, engine: Engine, status: StatusLists) -> None:
        self._engine = engine
        self._status = status
        self._lock = threading.Lock()
        self._views: OrderedDict[bytes, ECardView] = OrderedDict()

    def get(self, ecard_id: uuid.UUID, *, now: datetime) -> ECardView:
        with read_session(self._engine) as session:
            row = session.execute(
                select(ECard, Person, Card)
                .join(Person, Person.id == ECard.person_id)
                .join(Card, Card.id == ECard.card_id)
                .where(ECard.id == ecard_id)
            ).first()
        if row is None:
            raise ECardNotFoundError("no such e-card", ecard_id=str(ecard_id))
        return view_of(row[0], row[1], row[2], now=now)

    def active_for_device(self, device_kid: str, *, now: datetime) -> ECardView | None:
        """The newest active e-card bound to the device key ``device_kid``."""
        with read_session(self._engine) as session:
            row = session.execute(
                select(ECard, Person, Card)
                .join(Person, Person.id == ECard.person_id)
                .join(Card, Card.id == ECard.card_id)
                .where(ECard.device_kid == device_kid, ECard.state == ECardState.ACTIVE)
                .order_by(ECard.created_at.desc(), ECard.id)
                .limit(1)
            ).first()
        return None if row is None else view_of(row[0], row[1], row[2], now=now)

    def of_person(self, person_id: uuid.UUID, *, limit: int = 20) -> list[tuple[ECard, str]]:
        """The person's e-cards (every state) with their card numbers, newest first."""
        with read_session(self._engine) as session:
            rows = session.execute(
                select(ECard, Card.card_number)
                .join(Card, Card.id == ECard.card_id)
                .where(ECard.person_id == person_id)
                .order_by(ECard.created_at.desc(), ECard.id)
                .limit(limit)
            ).all()
        return [(row[0], str(row[1])) for row in rows]

    def by_ref(self, ref: bytes, *, now: datetime) -> ECardView | None:
        """An e-card by its token reference, cached (what it maps to never changes)."""
        with self._lock:
            view = self._views.get(ref)
            if view is not None:
                self._views.move_to_end(ref)
                return view
        with read_session(self._engine) as session:
            row = session.execute(
                select(ECard, Person, Card)
                .join(Person, Person.id == ECard.person_id)
                .join(Card, Card.id == ECard.card_id)
                .where(ECard.ref == ref.hex())
            ).first()
        if row is None:
            return None
        view = view_of(row[0], row[1], row[2], now=now)
        with self._lock:
            self._views[ref] = view
            if len(self._views) > _VIEW_CACHE:
                self._views.popitem(last=False)
        return view

    def forget(self, refs: list[bytes]) -> None:
        """Drop the cached views of e-cards a new binding replaced."""
        with self._lock:
            for ref in refs:
                self._views.pop(ref, None)

    def live_status(self, view: ECardView) -> tuple[Status, Status]:
        """(card status, e-card status) from the in-memory status lists."""
        return self._status.status_of(*view.card_status), self._status.status_of(*view.status)

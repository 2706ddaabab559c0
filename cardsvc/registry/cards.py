"""Cards: issue, personalization, lifecycle changes, reissue, and the due-date sweep."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from cardsvc.audit import hooks as audit_hooks
from cardsvc.audit.events import SYSTEM, Actor
from cardsvc.core.carddoc import CHINA_TZ, CardDocument
from cardsvc.core.errors import CoreError
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode, Sex
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.references import StatusReference
from cardsvc.db.models import LIVE_STATES, Card, CardEvent, Person
from cardsvc.keystore.service import KeyService
from cardsvc.registry.db import read_session, violated_constraint, write_session
from cardsvc.registry.errors import (
    BadRequestError,
    CardNotFoundError,
    ChipKeyError,
    ChipKeyInUseError,
    HolderDeceasedError,
    LiveCardExistsError,
    PersonNotFoundError,
)
from cardsvc.registry.lifecycle import Action, CardState, OperatorAction
from cardsvc.registry.persons import check_reason
from cardsvc.registry.status import StatusLists
from cardsvc.registry.transitions import Change, apply, record_event

#: Card numbers: one letter (no I or O, which read as digits) and eight digits.
CARD_NUMBER_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
SYSTEM_ACTOR = SYSTEM
_RETRIES = 8
_SWEEP_CHUNK = 500


def new_card_number() -> str:
    return secrets.choice(CARD_NUMBER_LETTERS) + f"{secrets.randbelow(10**8):08d}"


def china_date(now: datetime) -> date:
    """Card dates are calendar dates in China (UTC+8)."""
    return now.astimezone(CHINA_TZ).date()


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February -> 28 February
        return day.replace(year=day.year + years, day=28)


def parse_card_number(text: str) -> CardNumber:
    try:
        return CardNumber.parse(text)
    except CoreError as exc:
        raise CardNotFoundError(f"no such card: {exc.detail}") from None


@dataclass(frozen=True, kw_only=True)
class CardPolicy:
    validity_years: int
    lapse_after: timedelta
    sweep_interval_seconds: float


@dataclass(frozen=True, kw_only=True)
class Personalized:
    card: Card
    document: str


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    lapsed: int
    expired: int


class CardService:
    """Cards and their lifecycle. Each change is one transaction plus one event row; the
    status list entry is updated in memory right after the commit."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        status: StatusLists,
        policy: CardPolicy,
        *,
        issuer: str,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._status = status
        self._policy = policy
        self._issuer = issuer
        self._sweep_lock = threading.Lock()
        self._last_sweep = -float("inf")

    # -- reads ----------------------------------------------------------------------

    def get(self, card_number: str, *, now: datetime) -> Card:
        """A card by number, with a due lapse or expiry applied first."""
        number = str(parse_card_number(card_number))
        with read_session(self._engine) as session:
            card = session.scalar(select(Card).where(Card.card_number == number))
        if card is None:
            raise CardNotFoundError("no such card", card_number=number)
        if self._due(card, now):
            self.sweep(now=now, force=True)
            return self.get(number, now=now)
        return card

    def _due(self, card: Card, now: datetime) -> bool:
        if card.state not in LIVE_STATES:
            return False
        if (
            card.state is CardState.SUSPENDED
            and card.suspended_until is not None
            and _aware(card.suspended_until) <= now
        ):
            return True
        return card.expiry_date < china_date(now)

    def list(
        self,
        *,
        person_id: uuid.UUID | None = None,
        state: CardState | None = None,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[Card]:
        query = select(Card).order_by(Card.id).limit(limit)
        if person_id is not None:
            query = query.where(Card.person_id == person_id)
        if state is not None:
            query = query.where(Card.state == state)
        if after is not None:
            query = query.where(Card.id > after)
        with read_session(self._engine) as session:
            return session.scalars(query).all()

    def events(self, card_number: str, *, after: int | None, limit: int) -> Sequence[CardEvent]:
        number = str(parse_card_number(card_number))
        with read_session(self._engine) as session:
            card_id = session.scalar(select(Card.id).where(Card.card_number == number))
            if card_id is None:
                raise CardNotFoundError("no such card", card_number=number)
            query = select(CardEvent).where(CardEvent.card_id == card_id).order_by(CardEvent.id)
            if after is not None:
                query = query.where(CardEvent.id > after)
            return session.scalars(query.limit(limit)).all()

    def status_reference(self, card: Card) -> StatusReference:
        return StatusReference(idx=card.status_idx, uri=self._status.uri(card.status_shard))

    # -- issue ----------------------------------------------------------------------

    def issue(
        self,
        person_id: uuid.UUID,
        *,
        actor: Actor,
        now: datetime,
        reason: str = "new card",
        replaces: str | None = None,
    ) -> Card:
        """Issue a card (pending personalization) for a person who has no live card.

        ``replaces`` (a card number) makes this a reissue: that card is revoked in the same
        transaction. Two clerks issuing at once: the database's one-live-card index lets
        exactly one commit; the other gets :class:`LiveCardExistsError`.
        """
        check_reason(reason)
        for _ in range(_RETRIES):
            shard, idx = self._status.allocate(now=now)
            card_number = new_card_number()
            try:
                return self._issue_once(
                    person_id,
                    card_number,
                    shard,
                    idx,
                    actor=actor,
                    now=now,
                    reason=reason,
                    replaces=replaces,
                )
            except IntegrityError as exc:
                name = violated_constraint(exc)
                if name == "uq_cards_one_live_per_person":
                    raise LiveCardExistsError(self._live_card_number(person_id)) from None
                if name not in ("uq_cards_card_number", "uq_cards_status_index"):
                    raise
        raise RuntimeError("could not allocate a unique card number and status index")

    def _issue_once(
        self,
        person_id: uuid.UUID,
        card_number: str,
        shard: int,
        idx: int,
        *,
        actor: Actor,
        now: datetime,
        reason: str,
        replaces: str | None,
    ) -> Card:
        changes: list[Change] = []
        with write_session(self._engine) as session:
            person = session.get(Person, person_id)
            if person is None:
                raise PersonNotFoundError("no such person", person_id=str(person_id))
            if person.deceased_on is not None:
                raise HolderDeceasedError(
                    f"the holder's death was recorded ({person.deceased_on.isoformat()}): "
                    "no new cards"
                )
            old: Card | None = None
            if replaces is not None:
                old = session.scalar(
                    select(Card).where(Card.card_number == replaces).with_for_update()
                )
                if old is None:
                    raise CardNotFoundError("no such card", card_number=replaces)
                changes.append(
                    apply(session, old, Action.REISSUE, reason=reason, actor=actor, now=now)
                )
                session.flush()  # the old card leaves the one-live-card index first
            else:
                live = session.scalar(
                    select(Card.card_number).where(
                        Card.person_id == person_id, Card.state.in_(LIVE_STATES)
                    )
                )
                if live is not None:
                    raise LiveCardExistsError(live)
            issued = china_date(now)
            card = Card(
                id=uuid.uuid4(),
                card_number=card_number,
                person_id=person_id,
                state=CardState.PENDING_PERSONALIZATION,
                issue_date=issued,
                expiry_date=add_years(issued, self._policy.validity_years),
                status_shard=shard,
                status_idx=idx,
                replaces_card_id=old.id if old is not None else None,
                created_at=now,
                created_by=actor,
                updated_at=now,
            )
            session.add(card)
            session.flush()
            action = Action.REISSUE if old is not None else Action.ISSUE
            record_event(
                session, card, action=action, from_state=None, reason=reason, actor=actor, now=now
            )
            changes.append((shard, idx, CardState.PENDING_PERSONALIZATION))
        self._status.apply(changes)
        return card

    def _live_card_number(self, person_id: uuid.UUID) -> str | None:
        with read_session(self._engine) as session:
            return session.scalar(
                select(Card.card_number).where(
                    Card.person_id == person_id, Card.state.in_(LIVE_STATES)
                )
            )

    def reissue(self, card_number: str, *, reason: str, actor: Actor, now: datetime) -> Card:
        """A new card for the same person; the old one is revoked (reason ``reissued``)."""
        number = str(parse_card_number(card_number))
        with read_session(self._engine) as session:
            person_id = session.scalar(select(Card.person_id).where(Card.card_number == number))
        if person_id is None:
            raise CardNotFoundError("no such card", card_number=number)
        self.get(number, now=now)  # apply a due lapse or expiry first
        return self.issue(person_id, actor=actor, now=now, reason=reason, replaces=number)

    # -- personalization ------------------------------------------------------------

    def personalize(
        self, card_number: str, chip_jwk: Mapping[str, object], *, actor: Actor, now: datetime
    ) -> Personalized:
        """Bind the chip's public key and sign the card document; the card becomes active.

        Submitting the same chip key again returns the same document (a terminal whose
        write to the chip failed can retry).
        """
        number = str(parse_card_number(card_number))
        if "d" in chip_jwk:
            raise ChipKeyError("the chip key must be a public key generated on the card")
        try:
            chip_key = VerifyingKey.from_jwk(chip_jwk)
        except CoreError as exc:
            raise ChipKeyError(f"invalid chip key: {exc.detail}") from None
        try:
            with write_session(self._engine) as session:
                card = session.scalar(
                    select(Card).where(Card.card_number == number).with_for_update()
                )
                if card is None:
                    raise CardNotFoundError("no such card", card_number=number)
                if card.chip_kid == chip_key.kid and card.document is not None:
                    return Personalized(card=card, document=card.document)
                person = session.get(Person, card.person_id)
                assert person is not None  # noqa: S101 - foreign key
                if person.deceased_on is not None:
                    raise HolderDeceasedError("the holder's death was recorded")
                change = apply(
                    session,
                    card,
                    Action.PERSONALIZE,
                    reason="chip personalized",
                    actor=actor,
                    now=now,
                )
                document = CardDocument(
                    issuer=self._issuer,
                    card_number=CardNumber.parse(card.card_number),
                    citizen_id=CitizenId.parse(person.citizen_id, today=person.birth_date),
                    name=person.name,
                    sex=Sex(person.sex),
                    birth_date=person.birth_date,
                    region=RegionCode.parse(person.region_code),
                    issue_date=card.issue_date,
                    expiry_date=card.expiry_date,
                    chip_key=chip_key,
                    status=self.status_reference(card),
                    issued_at=now,
                ).sign(self._keys.signer(KeyPurpose.CARD_DOCUMENT, now=now))
                card.chip_kid = chip_key.kid
                card.chip_jwk = json.dumps(chip_key.jwk(), sort_keys=True)
                card.document = document
                audit_hooks.chip_bound(session, card, actor=actor, now=now)
        except IntegrityError as exc:
            if violated_constraint(exc) == "uq_cards_chip_kid":
                raise ChipKeyInUseError("this chip key is already bound to another card") from None
            raise
        self._status.apply([change])
        return Personalized(card=card, document=document)

    def document(self, card_number: str) -> str:
        number = str(parse_card_number(card_number))
        with read_session(self._engine) as session:
            card = session.scalar(select(Card).where(Card.card_number == number))
        if card is None:
            raise CardNotFoundError("no such card", card_number=number)
        if card.document is None:
            raise BadRequestError("the card is not personalized yet", state=card.state)
        return card.document

    # -- lifecycle ------------------------------------------------------------------

    def change(
        self, card_number: str, action: OperatorAction, *, reason: str, actor: Actor, now: datetime
    ) -> Card:
        """Apply an operator's lifecycle action; illegal ones raise a 409 with the reason."""
        check_reason(reason)
        number = str(parse_card_number(card_number))
        self.get(number, now=now)  # a due lapse or expiry is applied before the action
        with write_session(self._engine) as session:
            card = session.scalar(select(Card).where(Card.card_number == number).with_for_update())
            if card is None:
                raise CardNotFoundError("no such card", card_number=number)
            change = apply(
                session,
                card,
                Action(action.value),
                reason=reason,
                actor=actor,
                now=now,
                lapse_after=self._policy.lapse_after,
            )
        self._status.apply([change])
        return card

    def sweep(self, *, now: datetime, force: bool = False) -> SweepResult:
        """Apply what is due at ``now``: lapsed temporary loss reports, expired cards.

        Deterministic in ``now``; runs before a status list is served (at most once per
        sync interval), when a due card is read, and from ``cardsvc lifecycle sweep``.
        """
        if not force:
            with self._sweep_lock:
                tick = time.monotonic()
                if tick - self._last_sweep < self._policy.sweep_interval_seconds:
                    return SweepResult(lapsed=0, expired=0)
                self._last_sweep = tick
        lapsed = self._sweep_query(
            Action.LAPSE,
            (Card.state == CardState.SUSPENDED) & (Card.suspended_until <= now),
            reason="temporary loss report lapsed",
            now=now,
        )
        expired = self._sweep_query(
            Action.EXPIRE,
            Card.state.in_(LIVE_STATES) & (Card.expiry_date < china_date(now)),
            reason="card expired",
            now=now,
        )
        return SweepResult(lapsed=lapsed, expired=expired)

    def _sweep_query(self, action: Action, condition: object, *, reason: str, now: datetime) -> int:
        total = 0
        while True:
            changes: list[Change] = []
            with write_session(self._engine) as session:
                cards = session.scalars(
                    select(Card).where(condition).limit(_SWEEP_CHUNK).with_for_update()  # type: ignore[arg-type]
                ).all()
                for card in cards:
                    changes.append(
                        apply(session, card, action, reason=reason, actor=SYSTEM_ACTOR, now=now)
                    )
            self._status.apply(changes)
            total += len(changes)
            if len(cards) < _SWEEP_CHUNK:
                return total


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

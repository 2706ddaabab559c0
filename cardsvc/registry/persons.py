"""Persons: enrolment, look-up by citizen ID number, recorded corrections, death."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.audit import hooks as audit_hooks
from cardsvc.audit.events import Actor
from cardsvc.core.errors import InvalidIdentityError
from cardsvc.core.identity import CitizenId, RegionCode, Sex
from cardsvc.db.models import Person, PersonChange
from cardsvc.registry.db import read_session, violated_constraint, write_session
from cardsvc.registry.errors import (
    BadRequestError,
    DuplicatePersonError,
    HolderDeceasedError,
    PersonNotFoundError,
)
from cardsvc.registry.status import StatusLists
from cardsvc.registry.transitions import revoke_live_cards

MAX_NAME_LENGTH = 64
MAX_REASON_LENGTH = 500


def check_name(name: str) -> str:
    """A person's name as printed on the card: 1-64 characters, no control characters."""
    if not name:
        raise BadRequestError("name must not be empty", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequestError(f"name is longer than {MAX_NAME_LENGTH} characters", field="name")
    if name != name.strip():
        raise BadRequestError("name has leading or trailing whitespace", field="name")
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise BadRequestError("name contains control or unassigned characters", field="name")
    return name


def check_reason(reason: str) -> str:
    if not reason.strip():
        raise BadRequestError("a reason is required for the record", field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadRequestError(f"reason is longer than {MAX_REASON_LENGTH} characters")
    return reason


def parse_citizen_id(text: str, *, today: date | None = None) -> CitizenId:
    """Parse at the boundary; an invalid number is a 422 naming what to fix."""
    try:
        return CitizenId.parse(text, today=today)
    except InvalidIdentityError as exc:
        raise BadRequestError(
            f"invalid citizen ID number: {exc.reason}", field="citizen_id"
        ) from None


@dataclass(frozen=True, kw_only=True)
class Enrolment:
    """What a clerk enters; sex and birth date default to what the ID number encodes."""

    citizen_id: CitizenId
    name: str
    sex: Sex | None = None
    birth_date: date | None = None
    region_code: RegionCode | None = None

    def checked(self) -> tuple[Sex, date, RegionCode]:
        check_name(self.name)
        sex = self.citizen_id.sex if self.sex is None else self.sex
        birth = self.citizen_id.birth_date if self.birth_date is None else self.birth_date
        if sex is not self.citizen_id.sex:
            raise BadRequestError(
                f"sex {sex.value} does not match the citizen ID number "
                f"({self.citizen_id.sex.value})",
                field="sex",
            )
        if birth != self.citizen_id.birth_date:
            raise BadRequestError(
                f"birth date {birth.isoformat()} does not match the citizen ID number "
                f"({self.citizen_id.birth_date.isoformat()})",
                field="birth_date",
            )
        region = self.citizen_id.region_code if self.region_code is None else self.region_code
        return sex, birth, region


class DeathHook(Protocol):
    """What else a recorded death ends, in the same transaction as the death itself.

    The composition root passes the ledger's (it stops entitlements for periods after the
    death): the ledger builds on the registry, so the registry does not import it.
    """

    def __call__(
        self, session: Session, person_id: uuid.UUID, died_on: date, *, actor: Actor, now: datetime
    ) -> object: ...


class PersonService:
    """Enrol and maintain persons. Every method takes the acting principal and ``now``."""

    def __init__(self, engine: Engine, status: StatusLists, *, on_death: DeathHook) -> None:
        self._engine = engine
        self._status = status
        self._on_death = on_death

    def enrol(self, enrolment: Enrolment, *, actor: Actor, now: datetime) -> Person:
        """Enrol a person; :class:`DuplicatePersonError` names the existing record."""
        sex, birth, region = enrolment.checked()
        citizen_id = str(enrolment.citizen_id)
        existing = self._id_for(citizen_id)
        if existing is not None:
            raise DuplicatePersonError(str(existing))
        person = Person(
            id=uuid.uuid4(),
            citizen_id=citizen_id,
            name=enrolment.name,
            sex=sex.value,
            birth_date=birth,
            region_code=str(region),
            deceased_on=None,
            created_at=now,
            created_by=actor,
            updated_at=now,
        )
        try:
            with write_session(self._engine) as session:
                session.add(person)
                audit_hooks.person_enrolled(session, person, actor=actor, now=now)
        except IntegrityError as exc:
            if violated_constraint(exc) != "uq_persons_citizen_id":
                raise
            existing = self._id_for(citizen_id)  # enrolled concurrently
            raise DuplicatePersonError(str(existing)) from None
        return person

    def _id_for(self, citizen_id: str) -> uuid.UUID | None:
        with read_session(self._engine) as session:
            return session.scalar(select(Person.id).where(Person.citizen_id == citizen_id))

    def get(self, person_id: uuid.UUID) -> Person:
        with read_session(self._engine) as session:
            person = session.get(Person, person_id)
        if person is None:
            raise PersonNotFoundError("no such person", person_id=str(person_id))
        return person

    def find(self, citizen_id: CitizenId) -> Person:
        with read_session(self._engine) as session:
            person = session.scalar(select(Person).where(Person.citizen_id == str(citizen_id)))
        if person is None:
            raise PersonNotFoundError("no person is enrolled with this citizen ID number")
        return person

    def list(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Person]:
        query = select(Person).order_by(Person.id).limit(limit)
        if after is not None:
            query = query.where(Person.id > after)
        with read_session(self._engine) as session:
            return session.scalars(query).all()

    def changes(
        self, person_id: uuid.UUID, *, after: int | None, limit: int
    ) -> Sequence[PersonChange]:
        self.get(person_id)
        query = (
            select(PersonChange)
            .where(PersonChange.person_id == person_id)
            .order_by(PersonChange.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(PersonChange.id > after)
        with read_session(self._engine) as session:
            return session.scalars(query).all()

    def correct_name(
        self, person_id: uuid.UUID, name: str, *, reason: str, actor: Actor, now: datetime
    ) -> Person:
        """Correct a name; the old and new name, who, when and why are recorded.

        Cards already written keep the old name until they are reissued.
        """
        check_name(name)
        check_reason(reason)
        with write_session(self._engine) as session:
            person = session.get(Person, person_id, with_for_update=True)
            if person is None:
                raise PersonNotFoundError("no such person", person_id=str(person_id))
            if person.name == name:
                raise BadRequestError("the new name is the same as the current one")
            session.add(
                PersonChange(
                    person_id=person.id,
                    field="name",
                    old_value=person.name,
                    new_value=name,
                    reason=reason,
                    actor=actor,
                    at=now,
                )
            )
            audit_hooks.pending_person_changes(session, actor=actor, now=now)
            person.name = name
            person.updated_at = now
        return person

    def record_death(
        self, person_id: uuid.UUID, died_on: date, *, reason: str, actor: Actor, now: datetime
    ) -> Person:
        """Record the holder's death: every live card is revoked in the same transaction."""
        check_reason(reason)
        with write_session(self._engine) as session:
            person = session.get(Person, person_id, with_for_update=True)
            if person is None:
                raise PersonNotFoundError("no such person", person_id=str(person_id))
            if person.deceased_on is not None:
                raise HolderDeceasedError(
                    f"death already recorded on {person.deceased_on.isoformat()}"
                )
            if died_on < person.birth_date or died_on > now.date():
                raise BadRequestError("date of death must be between birth and today")
            session.add(
                PersonChange(
                    person_id=person.id,
                    field="deceased_on",
                    old_value=None,
                    new_value=died_on.isoformat(),
                    reason=reason,
                    actor=actor,
                    at=now,
                )
            )
            audit_hooks.pending_person_changes(session, actor=actor, now=now)
            person.deceased_on = died_on
            person.updated_at = now
            changes = revoke_live_cards(session, person.id, reason=reason, actor=actor, now=now)
            self._on_death(session, person.id, died_on, actor=actor, now=now)
        self._status.apply(changes)
        return person

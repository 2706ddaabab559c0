"""Persons: enrol, look up, correct, record a death; issue a card for a person."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Response, Security
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, int_cursor, next_cursor, uuid_cursor
from cardsvc.api.routes.audit import audit_receipt
from cardsvc.api.schemas import (
    AUTH,
    CardOut,
    DeathRecord,
    EnrolRequest,
    IssueRequest,
    LookupRequest,
    NameCorrection,
    PersonChangeOut,
    PersonOut,
    card_out,
    problems,
)
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.core.errors import InvalidIdentityError
from cardsvc.core.identity import RegionCode, Sex
from cardsvc.registry.errors import BadRequestError
from cardsvc.registry.persons import Enrolment, parse_citizen_id

router = APIRouter(prefix="/v1/persons", tags=["persons"])

PersonsRead = Annotated[Principal, Security(require(Scope.PERSONS_READ))]
PersonsWrite = Annotated[Principal, Security(require(Scope.PERSONS_WRITE))]
CardsRead = Annotated[Principal, Security(require(Scope.CARDS_READ))]
CardsWrite = Annotated[Principal, Security(require(Scope.CARDS_WRITE))]


@router.post(
    "",
    status_code=201,
    response_model=PersonOut,
    responses=problems(*AUTH, 409),
    summary="Enrol a person",
)
async def enrol(
    body: EnrolRequest, principal: PersonsWrite, services: ServicesDep, response: Response
) -> PersonOut:
    """Enrol with citizen ID number, name and (checked against the number) sex, birth
    date and region. A duplicate answers 409 with the existing person's reference."""
    citizen_id = parse_citizen_id(body.citizen_id)
    region = None
    if body.region_code is not None:
        try:
            region = RegionCode.parse(body.region_code)
        except InvalidIdentityError as exc:
            raise BadRequestError(exc.detail, field="region_code") from None
    enrolment = Enrolment(
        citizen_id=citizen_id,
        name=body.name,
        sex=Sex(body.sex) if body.sex else None,
        birth_date=body.birth_date,
        region_code=region,
    )
    person = await run_in_threadpool(
        lambda: services.persons.enrol(enrolment, actor=principal.actor, now=services.clock())
    )
    response.headers["Location"] = f"/v1/persons/{person.id}"
    return PersonOut.of(person)


@router.get("", response_model=Page[PersonOut], responses=problems(*AUTH))
async def list_persons(
    _principal: PersonsRead, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[PersonOut]:
    """Enrolled persons in a stable order, one page at a time."""
    after = uuid_cursor("person", cursor)
    persons = await run_in_threadpool(lambda: services.persons.list(after=after, limit=limit))
    return Page(
        items=[PersonOut.of(p) for p in persons],
        next_cursor=next_cursor("person", [p.id for p in persons], limit),
    )


@router.post(
    "/lookup",
    response_model=PersonOut,
    responses=problems(*AUTH, 404),
    summary="Find a person by citizen ID number",
)
async def lookup(body: LookupRequest, _principal: PersonsRead, services: ServicesDep) -> PersonOut:
    """The ID number travels in the body, not the URL, so it stays out of access logs."""
    citizen_id = parse_citizen_id(body.citizen_id)
    return PersonOut.of(await run_in_threadpool(services.persons.find, citizen_id))


@router.get("/{person_id}", response_model=PersonOut, responses=problems(*AUTH, 404))
async def get_person(
    person_id: uuid.UUID, _principal: PersonsRead, services: ServicesDep
) -> PersonOut:
    return PersonOut.of(await run_in_threadpool(services.persons.get, person_id))


@router.post(
    "/{person_id}/name-corrections",
    response_model=PersonOut,
    responses=problems(*AUTH, 404),
    summary="Correct a person's name (recorded: old, new, who, when, why)",
)
async def correct_name(
    person_id: uuid.UUID, body: NameCorrection, principal: PersonsWrite, services: ServicesDep
) -> PersonOut:
    person = await run_in_threadpool(
        lambda: services.persons.correct_name(
            person_id,
            body.name,
            reason=body.reason,
            actor=principal.actor,
            now=services.clock(),
        )
    )
    return PersonOut.of(person)


@router.get(
    "/{person_id}/changes",
    response_model=Page[PersonChangeOut],
    responses=problems(*AUTH, 404),
)
async def person_changes(
    person_id: uuid.UUID,
    _principal: PersonsRead,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[PersonChangeOut]:
    """Recorded changes to a person (name corrections, death), oldest first."""
    after = int_cursor("change", cursor)
    changes = await run_in_threadpool(
        lambda: services.persons.changes(person_id, after=after, limit=limit)
    )
    return Page(
        items=[PersonChangeOut.of(c) for c in changes],
        next_cursor=next_cursor("change", [c.id for c in changes], limit),
    )


@router.post(
    "/{person_id}/death",
    response_model=PersonOut,
    responses=problems(*AUTH, 404, 409),
    summary="Record the holder's death: every live card is revoked",
)
async def record_death(
    person_id: uuid.UUID,
    body: DeathRecord,
    principal: PersonsWrite,
    _cards: CardsWrite,
    services: ServicesDep,
) -> PersonOut:
    person = await run_in_threadpool(
        lambda: services.persons.record_death(
            person_id,
            body.died_on,
            reason=body.reason,
            actor=principal.actor,
            now=services.clock(),
        )
    )
    return PersonOut.of(person)


@router.post(
    "/{person_id}/cards",
    status_code=201,
    response_model=CardOut,
    responses=problems(*AUTH, 404, 409),
    summary="Issue a card (pending personalization) for a person",
)
async def issue_card(
    person_id: uuid.UUID,
    principal: CardsWrite,
    services: ServicesDep,
    response: Response,
    body: IssueRequest | None = None,
) -> CardOut:
    """A person has at most one live card: a second issue answers 409 naming it."""
    reason = body.reason if body is not None else "new card"
    card = await run_in_threadpool(
        lambda: services.cards.issue(
            person_id, actor=principal.actor, now=services.clock(), reason=reason
        )
    )
    response.headers["Location"] = f"/v1/cards/{card.card_number}"
    out = card_out(card, services.status.uri(card.status_shard))
    out.audit = await run_in_threadpool(audit_receipt, services, card.id, "card.issue")
    return out


@router.get("/{person_id}/cards", response_model=Page[CardOut], responses=problems(*AUTH, 404))
async def person_cards(
    person_id: uuid.UUID,
    _principal: CardsRead,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CardOut]:
    after = uuid_cursor("card", cursor)
    await run_in_threadpool(services.persons.get, person_id)
    cards = await run_in_threadpool(
        lambda: services.cards.list(person_id=person_id, after=after, limit=limit)
    )
    return Page(
        items=[card_out(c, services.status.uri(c.status_shard)) for c in cards],
        next_cursor=next_cursor("card", [c.id for c in cards], limit),
    )

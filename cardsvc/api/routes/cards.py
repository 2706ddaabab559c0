"""Cards: read, lifecycle changes, reissue, personalization of a blank chip."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, Security
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, int_cursor, next_cursor, uuid_cursor
from cardsvc.api.routes.audit import audit_receipt
from cardsvc.api.schemas import (
    AUTH,
    CardEventOut,
    CardOut,
    DocumentOut,
    PersonalizationOut,
    PersonalizationRequest,
    ReissueRequest,
    StatusChange,
    card_out,
    problems,
)
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.registry.lifecycle import CardState

router = APIRouter(prefix="/v1/cards", tags=["cards"])

CardsRead = Annotated[Principal, Security(require(Scope.CARDS_READ))]
CardsWrite = Annotated[Principal, Security(require(Scope.CARDS_WRITE))]
CardsPersonalize = Annotated[Principal, Security(require(Scope.CARDS_PERSONALIZE))]
CardNumberPath = Annotated[
    str, Path(min_length=1, max_length=32, description="The 9-character card number")
]


@router.get("", response_model=Page[CardOut], responses=problems(*AUTH))
async def list_cards(
    _principal: CardsRead,
    services: ServicesDep,
    state: Annotated[CardState | None, Query(description="Only cards in this state")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CardOut]:
    after = uuid_cursor("card", cursor)
    cards = await run_in_threadpool(
        lambda: services.cards.list(state=state, after=after, limit=limit)
    )
    return Page(
        items=[card_out(c, services.status.uri(c.status_shard)) for c in cards],
        next_cursor=next_cursor("card", [c.id for c in cards], limit),
    )


@router.get("/{card_number}", response_model=CardOut, responses=problems(*AUTH, 404))
async def get_card(
    card_number: CardNumberPath, _principal: CardsRead, services: ServicesDep
) -> CardOut:
    """A card; a due lapse of a temporary loss report or an expiry is applied first."""
    card = await run_in_threadpool(lambda: services.cards.get(card_number, now=services.clock()))
    return card_out(card, services.status.uri(card.status_shard))


@router.get(
    "/{card_number}/events", response_model=Page[CardEventOut], responses=problems(*AUTH, 404)
)
async def card_events(
    card_number: CardNumberPath,
    _principal: CardsRead,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CardEventOut]:
    """Every change of the card: action, states, who, when and why, oldest first."""
    after = int_cursor("event", cursor)
    events = await run_in_threadpool(
        lambda: services.cards.events(card_number, after=after, limit=limit)
    )
    return Page(
        items=[CardEventOut.of(e) for e in events],
        next_cursor=next_cursor("event", [e.id for e in events], limit),
    )


@router.post(
    "/{card_number}/status-changes",
    response_model=CardOut,
    responses=problems(*AUTH, 404, 409),
    summary="Report a temporary or formal loss, resume or revoke a card",
)
async def change_status(
    card_number: CardNumberPath, body: StatusChange, principal: CardsWrite, services: ServicesDep
) -> CardOut:
    """Illegal transitions answer 409 with the card's state and the reason."""
    card = await run_in_threadpool(
        lambda: services.cards.change(
            card_number,
            body.action,
            reason=body.reason,
            actor=principal.actor,
            now=services.clock(),
        )
    )
    return card_out(card, services.status.uri(card.status_shard))


@router.post(
    "/{card_number}/reissue",
    status_code=201,
    response_model=CardOut,
    responses=problems(*AUTH, 404, 409),
    summary="Replace a card: a new card for the same person, the old one revoked",
)
async def reissue(
    card_number: CardNumberPath,
    body: ReissueRequest,
    principal: CardsWrite,
    services: ServicesDep,
    response: Response,
) -> CardOut:
    card = await run_in_threadpool(
        lambda: services.cards.reissue(
            card_number, reason=body.reason, actor=principal.actor, now=services.clock()
        )
    )
    response.headers["Location"] = f"/v1/cards/{card.card_number}"
    out = card_out(card, services.status.uri(card.status_shard))
    out.audit = await run_in_threadpool(audit_receipt, services, card.id, "card.reissue")
    return out


@router.post(
    "/{card_number}/personalization",
    response_model=PersonalizationOut,
    responses=problems(*AUTH, 404, 409),
    summary="Submit the chip's public key; receive the signed card document to write",
)
async def personalize(
    card_number: CardNumberPath,
    body: PersonalizationRequest,
    principal: CardsPersonalize,
    services: ServicesDep,
) -> PersonalizationOut:
    """The card becomes active. Resubmitting the same chip key returns the same document."""
    result = await run_in_threadpool(
        lambda: services.cards.personalize(
            card_number, body.chip_jwk, actor=principal.actor, now=services.clock()
        )
    )
    return PersonalizationOut(
        card=card_out(result.card, services.status.uri(result.card.status_shard)),
        document=result.document,
        audit=await run_in_threadpool(audit_receipt, services, result.card.id, "card.chip_bound"),
    )


@router.get(
    "/{card_number}/document",
    response_model=DocumentOut,
    responses=problems(*AUTH, 404),
    summary="The signed card document of a personalized card (to write it again)",
)
async def document(
    card_number: CardNumberPath, _principal: CardsPersonalize, services: ServicesDep
) -> DocumentOut:
    text = await run_in_threadpool(services.cards.document, card_number)
    return DocumentOut(card_number=card_number.upper(), document=text)

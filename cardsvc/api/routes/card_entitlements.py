"""Open entitlements by card, for counter terminals collecting benefits.

A terminal holds ``transactions:write`` but not ``entitlements:read``: it sees only what it
needs to collect for the cardholder in front of it (the card number read from a verified
chip), and only open entitlements, without person ids or history.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Security
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.schemas import AUTH, problems
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.ledger.open_entitlements import open_entitlements

router = APIRouter(prefix="/v1/cards", tags=["entitlements"])

Terminal = Annotated[Principal, Security(require(Scope.TRANSACTIONS_WRITE))]


class OpenEntitlementOut(BaseModel):
    id: uuid.UUID
    benefit: str
    period: str = Field(description="YYYY-MM")
    amount_fen: int
    currency: str


class OpenEntitlementsOut(BaseModel):
    card_number: str
    items: list[OpenEntitlementOut]


@router.get(
    "/{card_number}/open-entitlements",
    response_model=OpenEntitlementsOut,
    responses=problems(*AUTH, 404),
    summary="The open entitlements of a card's holder (counter terminals)",
)
async def list_open_entitlements(
    card_number: Annotated[str, Path(min_length=1, max_length=32)],
    _principal: Terminal,
    services: ServicesDep,
) -> OpenEntitlementsOut:
    """Oldest period first, at most 100; the card's state is not checked here (collecting
    on a card that is not active is refused when the transaction arrives)."""

    def work() -> OpenEntitlementsOut:
        card = services.cards.get(card_number, now=services.clock())
        rows = open_entitlements(services.engine, card.person_id)
        return OpenEntitlementsOut(
            card_number=card.card_number,
            items=[
                OpenEntitlementOut(
                    id=r.id,
                    benefit=r.benefit,
                    period=r.period,
                    amount_fen=r.amount_fen,
                    currency=r.currency,
                )
                for r in rows
            ],
        )

    return await run_in_threadpool(work)

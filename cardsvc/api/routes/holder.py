"""Cardholder self-service: the holder's own transactions and entitlements.

Authenticated like every other e-card route by a device proof (``DPoP`` header, bound
device key, server nonce, one-time ``jti``), never by an OAuth client: the phone sees
only the data of the person its e-card belongs to. ``htu`` is the URL without the query,
so each page needs a fresh proof but the cursor is not part of what is signed.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, next_cursor, uuid_cursor
from cardsvc.api.routes.ecards import DPoP, _proven
from cardsvc.api.routes.entitlements import EntitlementOut
from cardsvc.api.routes.transactions import TransactionOut
from cardsvc.api.schemas import problems

router = APIRouter(tags=["e-cards"])

ECardId = Annotated[uuid.UUID, Path()]


@router.get(
    "/v1/ecards/{ecard_id}/transactions",
    response_model=Page[TransactionOut],
    responses=problems(401, 404, 422),
    summary="The holder's own transactions (device proof)",
)
async def holder_transactions(
    ecard_id: ECardId,
    request: Request,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    dpop: DPoP = None,
) -> Page[TransactionOut]:
    """Identity checks, collections and payments of the e-card's holder, conflicts
    included (their state says so); the same rows a clerk sees for that person."""
    after = uuid_cursor("transaction", cursor)
    view = await _proven(services, ecard_id, dpop, request)
    rows = await run_in_threadpool(
        lambda: services.transactions.for_person(view.person_id, after=after, limit=limit)
    )
    return Page(
        items=[TransactionOut.of(r) for r in rows],
        next_cursor=next_cursor("transaction", [r.id for r in rows], limit),
    )


@router.get(
    "/v1/ecards/{ecard_id}/entitlements",
    response_model=Page[EntitlementOut],
    responses=problems(401, 404, 422),
    summary="The holder's own entitlements (device proof)",
)
async def holder_entitlements(
    ecard_id: ECardId,
    request: Request,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    dpop: DPoP = None,
) -> Page[EntitlementOut]:
    """The holder's benefits: open, collected (with the transaction) or stopped."""
    after = uuid_cursor("entitlement", cursor)
    view = await _proven(services, ecard_id, dpop, request)
    rows = await run_in_threadpool(
        lambda: services.ledger.list(view.person_id, after=after, limit=limit)
    )
    return Page(
        items=[EntitlementOut.of(r) for r in rows],
        next_cursor=next_cursor("entitlement", [r.id for r in rows], limit),
    )

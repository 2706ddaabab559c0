"""The benefit ledger: a person's entitlements (operators create, clerks read)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response, Security
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, next_cursor, uuid_cursor
from cardsvc.api.schemas import AUTH, problems
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.db.models import Entitlement
from cardsvc.ledger.service import NewEntitlement

router = APIRouter(prefix="/v1/persons", tags=["entitlements"])

Read = Annotated[Principal, Security(require(Scope.ENTITLEMENTS_READ))]
Write = Annotated[Principal, Security(require(Scope.ENTITLEMENTS_WRITE))]


class EntitlementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    benefit: str = Field(min_length=1, max_length=32, description="Benefit type, e.g. pension")
    period: str = Field(min_length=7, max_length=7, description="YYYY-MM")
    amount_fen: int = Field(ge=1, le=1_000_000_000, description="Amount in fen (CNY)")


class EntitlementOut(BaseModel):
    id: uuid.UUID
    person_id: uuid.UUID
    benefit: str
    period: str
    amount_fen: int
    currency: str
    state: str = Field(description="open, collected or stopped")
    transaction_id: uuid.UUID | None
    stopped_reason: str | None
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, row: Entitlement) -> EntitlementOut:
        return cls(
            id=row.id,
            person_id=row.person_id,
            benefit=row.benefit,
            period=row.period,
            amount_fen=row.amount_fen,
            currency=row.currency,
            state=row.state,
            transaction_id=row.transaction_id,
            stopped_reason=row.stopped_reason,
            created_at=row.created_at,
            created_by=row.created_by,
        )


@router.post(
    "/{person_id}/entitlements",
    status_code=201,
    response_model=EntitlementOut,
    responses=problems(*AUTH, 404, 409),
    summary="Create an entitlement (one per person, benefit and period)",
)
async def create_entitlement(
    person_id: uuid.UUID,
    body: EntitlementRequest,
    principal: Write,
    services: ServicesDep,
    response: Response,
) -> EntitlementOut:
    new = NewEntitlement(benefit=body.benefit, period=body.period, amount_fen=body.amount_fen)
    row = await run_in_threadpool(
        lambda: services.ledger.create(person_id, new, actor=principal.actor, now=services.clock())
    )
    response.headers["Location"] = f"/v1/persons/{person_id}/entitlements"
    return EntitlementOut.of(row)


@router.get(
    "/{person_id}/entitlements",
    response_model=Page[EntitlementOut],
    responses=problems(*AUTH, 404),
)
async def list_entitlements(
    person_id: uuid.UUID,
    _principal: Read,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[EntitlementOut]:
    """A person's entitlements: open, collected (with the transaction) or stopped."""
    after = uuid_cursor("entitlement", cursor)
    rows = await run_in_threadpool(
        lambda: services.ledger.list(person_id, after=after, limit=limit)
    )
    return Page(
        items=[EntitlementOut.of(r) for r in rows],
        next_cursor=next_cursor("entitlement", [r.id for r in rows], limit),
    )

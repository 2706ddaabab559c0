"""Review of offline-sync conflicts and held forks (auditors and admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Security
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, _decode, encode_cursor
from cardsvc.api.schemas import AUTH, problems
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.transactions.review import ConflictItem, ReviewService

router = APIRouter(tags=["transactions"])

Reviewer = Annotated[Principal, Security(require(Scope.TRANSACTIONS_REVIEW))]
Ref = Annotated[
    str,
    Path(min_length=3, max_length=80, description="t:<transaction id> or h:<record digest>"),
]


class ReviewOut(BaseModel):
    decision: str
    reason: str
    reviewed_by: str
    reviewed_at: datetime
    audit_index: int = Field(description="The audit-log leaf recording the decision")


class ConflictOut(BaseModel):
    ref: str = Field(description="t:<transaction id> (a conflict) or h:<digest> (a held fork)")
    kind: Literal["transaction", "hold"]
    reason: str = Field(description="entitlement, counter-reused, counter-order, fork, ...")
    detail: str
    terminal_id: str
    terminal_seq: int
    received_at: datetime
    transaction_id: uuid.UUID | None
    review: ReviewOut | None = Field(description="null while open")

    @classmethod
    def of(cls, item: ConflictItem) -> ConflictOut:
        review = item.review
        return cls(
            ref=item.ref, kind="transaction" if item.kind == "transaction" else "hold",
            reason=item.reason, detail=item.detail, terminal_id=item.terminal_id,
            terminal_seq=item.terminal_seq, received_at=item.received_at,
            transaction_id=item.transaction_id,
            review=None if review is None else ReviewOut(
                decision=review.decision, reason=review.reason,
                reviewed_by=review.reviewed_by, reviewed_at=review.reviewed_at,
                audit_index=review.audit_index),
        )  # fmt: skip


class ResolutionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["refused", "cleared"] = Field(
        description="refused: never to be paid (a clone, a replay); cleared: legitimate, "
        "any payment owed is made as a new transaction"
    )
    reason: str = Field(min_length=1, max_length=500, description="Why: kept in the record")


@router.get(
    "/v1/transactions/conflicts",
    response_model=Page[ConflictOut],
    responses=problems(*AUTH),
    summary="Conflicts and held forks from offline sync, for review",
)
async def list_conflicts(
    _principal: Reviewer,
    services: ServicesDep,
    state: Literal["open", "resolved", "all"] = "open",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ConflictOut]:
    """Never paid while listed: what sync stored as a conflict or held as a fork."""
    after = _decode("conflict", cursor) if cursor is not None else None
    items = await run_in_threadpool(
        lambda: ReviewService(services.engine).list(state=state, after=after, limit=limit)
    )
    more = len(items) == limit and items
    return Page(
        items=[ConflictOut.of(i) for i in items],
        next_cursor=encode_cursor("conflict", items[-1].ref) if more else None,
    )


@router.get(
    "/v1/transactions/conflicts/{ref}",
    response_model=ConflictOut,
    responses=problems(*AUTH, 404),
    summary="One conflict or held fork, with its review if any",
)
async def get_conflict(ref: Ref, _principal: Reviewer, services: ServicesDep) -> ConflictOut:
    item = await run_in_threadpool(ReviewService(services.engine).get, ref)
    return ConflictOut.of(item)


@router.post(
    "/v1/transactions/conflicts/{ref}/resolution",
    status_code=201,
    response_model=ConflictOut,
    responses=problems(*AUTH, 404, 409),
    summary="Resolve a conflict with a decision and a reason (recorded and audited)",
)
async def resolve_conflict(
    ref: Ref, body: ResolutionRequest, principal: Reviewer, services: ServicesDep
) -> ConflictOut:
    item = await run_in_threadpool(
        lambda: ReviewService(services.engine).resolve(
            ref, decision=body.decision, reason=body.reason, actor=principal.actor,
            now=services.clock(),
        )
    )  # fmt: skip
    return ConflictOut.of(item)

"""Offline batch sync: ``POST /v1/transactions/batches`` (terminal-authenticated).

Each record is answered on its own (accepted / duplicate / conflict / rejected); uploading
the same batch again, or batches out of order, is safe: nothing is paid twice
(:mod:`cardsvc.transactions.batch`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Security
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.schemas import AUTH, problems
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.transactions.acceptance import CLERK_ID
from cardsvc.transactions.batch import MAX_BATCH, parse_items

router = APIRouter(tags=["transactions"])

Terminal = Annotated[Principal, Security(require(Scope.TRANSACTIONS_WRITE))]
_B64 = r"^[A-Za-z0-9_-]+$"


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nonce: str = Field(min_length=22, max_length=22, pattern=_B64)
    data: str = Field(min_length=2, max_length=1400, pattern=_B64)
    counter: int = Field(ge=1, le=0xFFFFFFFF)
    card_signature: str = Field(min_length=86, max_length=86, pattern=_B64)
    terminal_signature: str = Field(min_length=86, max_length=86, pattern=_B64)


class BatchItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=1, le=2**53, description="The terminal's journal sequence number")
    record: RecordIn | None = None
    void: str | None = Field(
        default=None, min_length=1, max_length=200, description="Torn: the card never signed"
    )
    flag: Literal["journal-damaged"] | None = None
    clerk_id: str | None = Field(
        default=None, pattern=CLERK_ID,
        description="The clerk signed in at the counter (operator client id), as the "
        "terminal says; recorded in the transaction's audit event",
    )  # fmt: skip


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terminal_certificate: str = Field(min_length=1, max_length=8192)
    records: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH)


@router.post(
    "/v1/transactions/batches",
    responses=problems(*AUTH, 422),
    summary="Upload a terminal's journal records (offline sync); answers each record",
)
async def upload(body: BatchIn, principal: Terminal, services: ServicesDep) -> dict[str, Any]:
    """Dedup on (terminal, seq) and (card, counter); conflicts are held, never paid."""
    items = parse_items(
        {"seq": i.seq, "record": i.record.model_dump() if i.record else None, "void": i.void,
         "flag": i.flag, "clerk_id": i.clerk_id}
        for i in body.records
    )  # fmt: skip

    def work() -> dict[str, Any]:
        terminal = services.clients.caller(principal.subject)
        result = services.transaction_batches.upload(
            items,
            certificate=body.terminal_certificate,
            terminal=terminal,
            now=services.clock(),
        )
        services.metrics.synced(r.outcome.value for r in result.results)
        return result.to_json()

    return await run_in_threadpool(work)

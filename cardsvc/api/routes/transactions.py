"""Counter transactions: terminal certificates, nonces, online submission, views.

``POST /v1/transactions`` requires an ``Idempotency-Key`` (REFERENCE.md): missing -> 400,
the same key with another payload -> 422, while the first is in flight -> 409, afterwards
the stored response is replayed (the same status and body).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Security
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, next_cursor, uuid_cursor
from cardsvc.api.problems import PROBLEM_JSON, problem_body
from cardsvc.api.schemas import AUTH, problems
from cardsvc.api.security import require
from cardsvc.auth.clients import Client
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import b64url_encode
from cardsvc.core.transaction import SignedRecord
from cardsvc.db.models import TransactionRow
from cardsvc.errors import CardsvcError
from cardsvc.services import Services
from cardsvc.transactions.acceptance import CLERK_ID
from cardsvc.transactions.errors import TransactionError
from cardsvc.transactions.idempotency import (
    Claim,
    StoredResponse,
    check_key,
    request_hash,
)
from cardsvc.transactions.service import Accepted

router = APIRouter(tags=["transactions"])

Terminal = Annotated[Principal, Security(require(Scope.TRANSACTIONS_WRITE))]
Read = Annotated[Principal, Security(require(Scope.TRANSACTIONS_READ))]
_B64 = r"^[A-Za-z0-9_-]+$"


class CertificateOut(BaseModel):
    certificate: str = Field(description="Compact JWS, typ cardsvc-terminal+jwt")


class ChallengeOut(BaseModel):
    nonce: str = Field(description="16 random bytes, base64url: the card signs them")
    expires_at: datetime


class TransactionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nonce: str = Field(min_length=22, max_length=22, pattern=_B64)
    data: str = Field(min_length=2, max_length=1400, pattern=_B64)
    counter: int = Field(ge=1, le=0xFFFFFFFF)
    card_signature: str = Field(min_length=86, max_length=86, pattern=_B64)
    terminal_signature: str = Field(min_length=86, max_length=86, pattern=_B64)
    terminal_certificate: str = Field(min_length=1, max_length=8192)
    clerk_id: str | None = Field(
        default=None, pattern=CLERK_ID,
        description="The clerk signed in at the counter (operator client id), as the "
        "terminal says (outside the signed record: the terminal is authenticated); "
        "recorded in the transaction's audit event",
    )  # fmt: skip


class TransactionOut(BaseModel):
    id: uuid.UUID
    type: str
    mode: str
    state: str
    conflict: str | None
    card_id: uuid.UUID
    terminal_id: str
    terminal_seq: int
    card_counter: int
    amount_fen: int
    currency: str
    entitlement_id: uuid.UUID | None
    reference: str | None
    at: datetime
    received_at: datetime

    @classmethod
    def of(cls, row: TransactionRow) -> TransactionOut:
        return cls(
            id=row.id,
            type=row.kind,
            mode=row.mode,
            state=row.state,
            conflict=row.conflict,
            card_id=row.card_id,
            terminal_id=row.terminal_id,
            terminal_seq=row.terminal_seq,
            card_counter=row.card_counter,
            amount_fen=row.amount_fen,
            currency=row.currency,
            entitlement_id=row.entitlement_id,
            reference=row.reference,
            at=row.at,
            received_at=row.received_at,
        )


@router.post(
    "/v1/terminal-certificates",
    response_model=CertificateOut,
    responses=problems(*AUTH),
    summary="Certify the calling terminal's registered public key",
)
async def certify(principal: Terminal, services: ServicesDep) -> CertificateOut:
    client = await run_in_threadpool(services.clients.caller, principal.subject)
    certificate = services.transactions.certify(client, now=services.clock())
    return CertificateOut(certificate=certificate)


@router.post(
    "/v1/transactions/challenges",
    status_code=201,
    response_model=ChallengeOut,
    responses=problems(*AUTH),
    summary="A one-time nonce for the card to sign (valid two minutes)",
)
async def challenge(principal: Terminal, services: ServicesDep) -> ChallengeOut:
    nonce, expires = await run_in_threadpool(
        lambda: services.transactions.challenge(principal.subject, now=services.clock())
    )
    return ChallengeOut(nonce=b64url_encode(nonce), expires_at=expires)


def _respond(stored: StoredResponse, *, replayed: bool) -> JSONResponse:
    media = "application/json" if stored.status_code < 400 else PROBLEM_JSON
    response = JSONResponse(stored.body, status_code=stored.status_code, media_type=media)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.post(
    "/v1/transactions",
    status_code=201,
    responses=problems(*AUTH, 400, 409),
    summary="Submit an online transaction (card- and terminal-signed); needs Idempotency-Key",
)
def submit(
    body: TransactionRequest,
    principal: Terminal,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Verifies the card's signature with its chip key, the terminal's signature and
    certificate, the nonce, the card counter and the entitlement; answers a signed receipt."""
    key = check_key(idempotency_key)
    # Before the idempotency claim: a token naming no registered client stores nothing.
    terminal = services.clients.caller(principal.subject)
    digest = request_hash("POST", "/v1/transactions", body.model_dump())
    now = services.clock()
    claim = services.idempotency.begin(principal.subject, key, digest, now=now)
    if isinstance(claim, StoredResponse):
        return _respond(claim, replayed=True)
    return _process(body, terminal, services, claim, now)


def _process(
    body: TransactionRequest,
    terminal: Client,
    services: Services,
    claim: Claim,
    now: datetime,
) -> JSONResponse:
    store = services.idempotency

    def on_commit(session: Session, accepted: Accepted) -> None:
        status = 200 if accepted.replayed else 201
        store.complete_in(
            session, claim, StoredResponse(status_code=status, body=accepted.to_json()), now=now
        )

    try:
        try:
            record = SignedRecord.from_json(body.model_dump())
        except CoreError as exc:
            raise TransactionError("record", str(exc)) from None
        accepted = services.transactions.submit(
            record,
            certificate=body.terminal_certificate,
            terminal=terminal,
            now=now,
            on_commit=on_commit,
            clerk=body.clerk_id,
        )
    except CardsvcError as exc:
        refusal = problem_body(exc)
        if refusal["status"] >= 500:
            store.release(claim)
            raise
        stored = StoredResponse(status_code=refusal["status"], body=refusal)
        store.complete(claim, stored, now=now)
        return _respond(stored, replayed=False)
    except BaseException:
        store.release(claim)
        raise
    return _respond(
        StoredResponse(status_code=200 if accepted.replayed else 201, body=accepted.to_json()),
        replayed=False,
    )


@router.get(
    "/v1/persons/{person_id}/transactions",
    response_model=Page[TransactionOut],
    responses=problems(*AUTH, 404),
    tags=["transactions"],
)
async def person_transactions(
    person_id: uuid.UUID,
    _principal: Read,
    services: ServicesDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TransactionOut]:
    """A person's transactions (identity checks, collections, payments), with conflicts."""
    after = uuid_cursor("transaction", cursor)
    rows = await run_in_threadpool(
        lambda: services.transactions.for_person(person_id, after=after, limit=limit)
    )
    return Page(
        items=[TransactionOut.of(r) for r in rows],
        next_cursor=next_cursor("transaction", [r.id for r in rows], limit),
    )

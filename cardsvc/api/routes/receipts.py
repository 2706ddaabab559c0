"""Checking a counter receipt by its verification code: public, nothing personal.

``GET /v1/receipts/{code}`` answers what the printed receipt says (kind, amount, Beijing
date and time to the minute, the counter's registered name, and whether the issuer holds
it for review) for the holder or an auditor who types the code. It names no card, person
or entitlement, so a guessed code (one in 2^60) learns no more than finding the receipt
would. An unknown code and a known one differ only in that answer: the same headers,
one indexed query either way. A receipt made offline is known once its counter synced.
Rate limits are the service's own (cardsvc.ratelimit), not this route's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.problems import PROBLEM_JSON, problem_body
from cardsvc.api.schemas import problems
from cardsvc.core.errors import CoreError
from cardsvc.core.receiptcode import format_receipt_code, parse_receipt_code
from cardsvc.transactions.errors import ReceiptCodeError, ReceiptUnknownError

router = APIRouter(tags=["receipts"])

_BEIJING = ZoneInfo("Asia/Shanghai")
_HEADERS = {"Cache-Control": "no-store"}


class ReceiptCheckOut(BaseModel):
    code: str = Field(description="As printed: 12 characters in groups of four")
    kind: str = Field(description="benefit, fee or identity")
    amount_fen: int
    currency: str
    date: str = Field(description="Beijing date, YYYY-MM-DD")
    time: str = Field(description="Beijing time, HH:MM")
    terminal: str = Field(description="The counter's registered name")
    state: str = Field(description="accepted, or under_review (held at sync: not paid)")


def _beijing(at: datetime) -> datetime:
    return at.astimezone(_BEIJING)


@router.get(
    "/v1/receipts/{code}",
    response_model=ReceiptCheckOut,
    responses=problems(400, 404, 422),
    summary="Check a counter receipt by its verification code (public, nothing personal)",
)
async def check_receipt(
    code: Annotated[str, Path(min_length=1, max_length=40)], services: ServicesDep
) -> JSONResponse:
    """Both answers carry the same headers (the problem is built here, not by the
    app's handler, which adds none of these)."""
    try:
        try:
            canonical = parse_receipt_code(code)
        except CoreError:
            raise ReceiptCodeError("not a receipt code: 12 letters and digits") from None
        found = await run_in_threadpool(services.transactions.by_receipt_code, canonical)
    except (ReceiptCodeError, ReceiptUnknownError) as exc:
        body = problem_body(exc)
        return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON,
                            headers=_HEADERS)  # fmt: skip
    at = _beijing(found.at)
    out = ReceiptCheckOut(
        code=format_receipt_code(found.code), kind=found.kind, amount_fen=found.amount_fen,
        currency=found.currency, date=at.strftime("%Y-%m-%d"), time=at.strftime("%H:%M"),
        terminal=found.terminal_name, state="under_review" if found.under_review else "accepted",
    )  # fmt: skip
    return JSONResponse(out.model_dump(), headers=_HEADERS)

"""Transaction errors: each names the failed check and maps to a problem document."""

from __future__ import annotations

from typing import Any

from cardsvc.errors import CardsvcError


class TransactionError(CardsvcError):
    """Root of transaction errors; ``fields`` become members of the problem document."""

    code = "transaction-refused"
    http_status = 422

    def __init__(self, check: str, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.check = check
        self.fields: dict[str, Any] = {"check": check, **fields}


class TransactionConflictError(TransactionError):
    """The record contradicts what the issuer already holds (replayed counter, used nonce)."""

    code = "transaction-conflict"
    http_status = 409


class IdempotencyError(CardsvcError):
    """Idempotency-Key misuse (REFERENCE.md): 400 missing, 422 other payload, 409 in flight."""

    code = "idempotency"

    def __init__(self, code: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.http_status = status

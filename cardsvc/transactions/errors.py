"""Transaction errors: each names the failed check and maps to a problem document."""

from __future__ import annotations

from typing import Any

from cardsvc.errors import CardsvcError, Conflict, Invalid, Malformed, NotFound


class TransactionError(Invalid, CardsvcError):
    """Root of transaction errors; ``fields`` become members of the problem document."""

    code = "transaction-refused"

    def __init__(self, check: str, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.check = check
        self.fields: dict[str, Any] = {"check": check, **fields}


class TransactionConflictError(Conflict, TransactionError):
    """The record contradicts what the issuer already holds (replayed counter, used nonce)."""

    code = "transaction-conflict"


class IdempotencyError(CardsvcError):
    """Idempotency-Key misuse (REFERENCE.md)."""

    code = "idempotency"


class IdempotencyKeyError(Malformed, IdempotencyError):
    """The Idempotency-Key header is missing or not 1-255 printable ASCII."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class IdempotencyKeyReusedError(Invalid, IdempotencyError):
    """The key was used with another request payload."""

    code = "idempotency-key-reused"


class RequestInFlightError(Conflict, IdempotencyError):
    """A request with this key is still being processed."""

    code = "idempotency-request-in-flight"


class ReceiptCodeError(Malformed, CardsvcError):
    """Not a receipt verification code (the text is not repeated)."""

    code = "receipt-code-malformed"


class ReceiptUnknownError(NotFound, CardsvcError):
    """No transaction holds this receipt code: mistyped, or not synced by its counter yet."""

    code = "receipt-unknown"

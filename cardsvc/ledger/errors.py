"""Ledger errors, each mapped to a problem document with its data as fields."""

from __future__ import annotations

from typing import Any

from cardsvc.errors import CardsvcError, Conflict, Invalid, NotFound


class LedgerError(CardsvcError):
    """Root of ledger errors; ``fields`` become members of the problem document."""

    code = "ledger"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.fields: dict[str, Any] = fields


class InvalidEntitlementError(Invalid, LedgerError):
    code = "invalid-entitlement"


class DuplicateEntitlementError(Conflict, LedgerError):
    code = "entitlement-exists"

    def __init__(self, entitlement_id: str) -> None:
        super().__init__(
            "this person already has an entitlement for this benefit and period",
            existing_entitlement_id=entitlement_id,
        )
        self.entitlement_id = entitlement_id


class EntitlementNotFoundError(NotFound, LedgerError):
    code = "entitlement-not-found"


class EntitlementUnavailableError(Conflict, LedgerError):
    """Already collected, stopped, or not the holder's: it is never paid."""

    code = "entitlement-unavailable"

"""E-card errors; each names its reason so a client (and a test) can tell them apart."""

from __future__ import annotations

from typing import Any

from cardsvc.errors import CardsvcError, Forbidden, Invalid, Unauthenticated
from cardsvc.registry.errors import ConflictError, NotFoundError, RegistryError


class ECardNotFoundError(NotFoundError):
    code = "ecard-not-found"


class NoActiveCardError(ConflictError):
    """E-cards are only for persons whose card is active."""

    code = "no-active-card"


class DeviceAlreadyBoundError(ConflictError):
    """The holder's active e-card is already bound to this device key."""

    code = "device-already-bound"


class ECardInactiveError(ConflictError):
    """The e-card is replaced, revoked or suspended: no tokens."""

    code = "ecard-inactive"


class DeviceKeyError(Invalid, RegistryError):
    code = "invalid-device-key"


class ActivationError(Invalid, RegistryError):
    """An activation attempt failed; ``reason`` says which check (and attempts left)."""

    code = "activation-failed"

    def __init__(self, reason: str, detail: str, **fields: Any) -> None:
        super().__init__(detail, reason=reason, **fields)
        self.reason = reason


class ActivationLockedError(Forbidden, ActivationError):
    """Too many wrong codes: the code is locked; an operator must issue a new one."""

    code = "activation-locked"


class DeviceProofError(Unauthenticated, CardsvcError):
    """A token request's device proof failed; ``reason`` names the check."""

    code = "invalid-device-proof"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.fields: dict[str, Any] = {"reason": reason}


class TokenRejectedError(Invalid, CardsvcError):
    """Online verification refused a QR token; ``check`` names the failed check."""

    code = "token-rejected"

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail)
        self.check = check
        self.fields: dict[str, Any] = {"check": check}

"""The states the registry's and the e-cards' tables hold (pure, no I/O).

Here, below :mod:`cardsvc.registry`, because the tables in :mod:`cardsvc.db.models` type
their state columns with them and the registry builds on those tables. The rules between
card states are in :mod:`cardsvc.registry.lifecycle`.
"""

from __future__ import annotations

from enum import StrEnum


class CardState(StrEnum):
    PENDING_PERSONALIZATION = "pending_personalization"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ECardState(StrEnum):
    ACTIVE = "active"
    REPLACED = "replaced"  # a newer device was bound: final
    REVOKED = "revoked"  # its card was revoked, reissued or expired, or the holder died: final


class ActivationCodeState(StrEnum):
    OPEN = "open"
    USED = "used"
    LOCKED = "locked"  # too many wrong attempts
    SUPERSEDED = "superseded"  # a newer code was handed out


class ActivationChannel(StrEnum):
    """How an e-card was activated: with a one-time code in the wallet, or at a counter."""

    CODE = "code"
    COUNTER = "counter"

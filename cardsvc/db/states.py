"""The values the tables' state and kind columns hold (pure, no I/O).

Here, below every domain package, because the tables in :mod:`cardsvc.db.models` type
their columns with them and the domain builds on those tables (the domain modules
re-export the ones they own). The rules between card states are in
:mod:`cardsvc.registry.lifecycle`.
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


class Role(StrEnum):
    """Operator roles; machine clients get scopes directly."""

    ADMIN = "admin"
    CLERK = "clerk"
    AUDITOR = "auditor"


class ClientKind(StrEnum):
    OPERATOR = "operator"
    TERMINAL = "terminal"
    PARTNER = "partner"


class ClientStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # refused at the token endpoint until made active again


class EntitlementState(StrEnum):
    OPEN = "open"
    COLLECTED = "collected"  # by one transaction, named by transaction_id: final
    STOPPED = "stopped"  # the holder died before its period: final


class Arrival(StrEnum):
    """How a record reached the issuer (the ``mode`` of its row)."""

    ONLINE = "online"
    OFFLINE = "offline"


class TransactionState(StrEnum):
    ACCEPTED = "accepted"  # paid, with a receipt
    CONFLICT = "conflict"  # synced offline but not paid: held for review


class IdempotencyState(StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"  # the answer is stored and replayed to a retry


class Decision(StrEnum):
    REFUSED = "refused"  # not to be paid (a clone, a replay)
    CLEARED = "cleared"  # legitimate: any payment owed is a new transaction

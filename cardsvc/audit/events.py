"""What goes into the audit log: typed kinds, events and the actor who caused them.

Every audited write builds an :class:`AuditEvent` and hands it, with the :class:`Actor`
checked once where the caller was authenticated, to :func:`cardsvc.audit.log.append`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cardsvc.errors import CardsvcError, Malformed

MAX_ACTOR_LENGTH = 128
MAX_SUBJECT_LENGTH = 128


class AuditKind(StrEnum):
    """What happened; the leaf's ``kind``. Verification keys rows by these prefixes."""

    PERSON_ENROLLED = "person.enrolled"
    PERSON_NAME = "person.name"
    PERSON_DECEASED_ON = "person.deceased_on"
    CARD_ISSUE = "card.issue"
    CARD_PERSONALIZE = "card.personalize"
    CARD_REPORT_TEMPORARY_LOSS = "card.report_temporary_loss"
    CARD_LAPSE = "card.lapse"
    CARD_RESUME = "card.resume"
    CARD_REPORT_LOSS = "card.report_loss"
    CARD_REVOKE = "card.revoke"
    CARD_REISSUE = "card.reissue"
    CARD_EXPIRE = "card.expire"
    CARD_HOLDER_DECEASED = "card.holder_deceased"
    CARD_ECARD_BOUND = "card.ecard_bound"
    CARD_CHIP_BOUND = "card.chip_bound"
    ECARD_BOUND = "ecard.bound"
    ECARD_CODE_ISSUED = "ecard.code_issued"
    ECARD_CODE_LOCKED = "ecard.code_locked"
    ECARD_REVOKED = "ecard.revoked"
    ENTITLEMENT_CREATED = "entitlement.created"
    ENTITLEMENT_STOPPED = "entitlement.stopped"
    TRANSACTION_IDENTITY = "transaction.identity"
    TRANSACTION_BENEFIT = "transaction.benefit"
    TRANSACTION_FEE = "transaction.fee"
    TRANSACTION_IDENTITY_CONFLICT = "transaction.identity.conflict"
    TRANSACTION_BENEFIT_CONFLICT = "transaction.benefit.conflict"
    TRANSACTION_FEE_CONFLICT = "transaction.fee.conflict"
    TRANSACTION_HELD = "transaction.held"
    TRANSACTION_REVIEW_REFUSED = "transaction.review.refused"
    TRANSACTION_REVIEW_CLEARED = "transaction.review.cleared"
    CLIENT_POLICY_CHANGED = "client.policy_changed"
    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"
    KEY_TRUST_LIST = "key.trust_list"

    @classmethod
    def card(cls, action: str) -> AuditKind:
        """The kind of a card event (``action``: a lifecycle action or ``ecard_bound``)."""
        return cls(f"card.{action}")

    @classmethod
    def person_change(cls, field_name: str) -> AuditKind:
        return cls(f"person.{field_name}")

    @classmethod
    def transaction(cls, kind: str, *, conflict: bool = False) -> AuditKind:
        return cls(f"transaction.{kind}" + (".conflict" if conflict else ""))


class AuditError(CardsvcError):
    """The root of the audit log's errors."""

    code = "audit"


class InvalidActorError(Malformed, AuditError):
    """An actor name that cannot go in the log (empty, too long, control characters)."""

    code = "invalid-actor"


class Actor(str):
    """Who caused a change: a client id, ``batch:<operator>``, ``system``, ...

    A string checked when it is made: 1 to 128 characters, no control characters, no
    surrounding whitespace. It is made once where the caller is authenticated (a
    verified token, a CLI option), so the services store and log it as it is instead of
    truncating it where they write.
    """

    __slots__ = ()

    def __new__(cls, name: str) -> Actor:
        if not 0 < len(name) <= MAX_ACTOR_LENGTH:
            raise InvalidActorError(f"an actor must be 1 to {MAX_ACTOR_LENGTH} characters")
        if name != name.strip() or any(unicodedata.category(c)[0] == "C" for c in name):
            raise InvalidActorError(
                "an actor must not hold control characters or surrounding whitespace"
            )
        return super().__new__(cls, name)


#: Changes the issuer makes by itself (lapses, expiries), and the key store's own events.
SYSTEM = Actor("system")
KEYSTORE = Actor("keystore")
#: A holder in the wallet before any e-card identifies them (a wrong activation code).
WALLET = Actor("wallet")


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEvent:
    """One leaf to be: ``kind`` of change to ``subject`` (``card:<uuid>``).

    ``data`` is stored in clear and must hold no personal data; ``commit`` (the audited
    row, see :mod:`cardsvc.audit.rows`) only as a salted hash. ``row`` is the ORM object
    the event records, so the flush guard knows it is covered.
    """

    kind: AuditKind
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    commit: Mapping[str, Any] | None = None
    row: object | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, AuditKind):
            raise TypeError("an audit event's kind is an AuditKind")
        if not 0 < len(self.subject) <= MAX_SUBJECT_LENGTH:
            raise ValueError(f"an audit subject must be 1 to {MAX_SUBJECT_LENGTH} characters")
        if self.commit is not None and "row" in self.data:
            raise ValueError("data['row'] is reserved for the commitment")

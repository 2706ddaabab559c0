"""Every table of the issuer, in one place, by one convention: SQLAlchemy 2 declarative,
typed (``Mapped``), on one :class:`Base`; one module per part of the issuer. Constraints
live in the database (the migrations), not only in code; state columns hold the enums
of :mod:`cardsvc.db.states`."""

from __future__ import annotations

from cardsvc.db.models.audit import (
    AuditCheckpoint,
    AuditLeaf,
    AuditNode,
    AuditState,
    audit_checkpoints,
    audit_leaves,
    audit_nodes,
    audit_state,
)
from cardsvc.db.models.auth import (
    ClientRow,
    PartnerRow,
)
from cardsvc.db.models.base import (
    Base,
    BigId,
    ServiceMeta,
    UtcDateTime,
    state_type,
)
from cardsvc.db.models.bundles import (
    VerifierBundleRow,
    VerifierBundleShardRow,
)
from cardsvc.db.models.ledger import (
    Entitlement,
)
from cardsvc.db.models.registry import (
    LIVE_STATES,
    ActivationCode,
    Card,
    CardEvent,
    ECard,
    Person,
    PersonChange,
    StatusShard,
)
from cardsvc.db.models.transactions import (
    Challenge,
    ConflictReview,
    IdempotencyRecord,
    TerminalJournal,
    TerminalVoid,
    TransactionHold,
    TransactionRow,
)

__all__ = [
    "LIVE_STATES",
    "ActivationCode",
    "AuditCheckpoint",
    "AuditLeaf",
    "AuditNode",
    "AuditState",
    "Base",
    "BigId",
    "Card",
    "CardEvent",
    "Challenge",
    "ClientRow",
    "ConflictReview",
    "ECard",
    "Entitlement",
    "IdempotencyRecord",
    "PartnerRow",
    "Person",
    "PersonChange",
    "ServiceMeta",
    "StatusShard",
    "TerminalJournal",
    "TerminalVoid",
    "TransactionHold",
    "TransactionRow",
    "UtcDateTime",
    "VerifierBundleRow",
    "VerifierBundleShardRow",
    "audit_checkpoints",
    "audit_leaves",
    "audit_nodes",
    "audit_state",
    "state_type",
]

"""Ledger and transaction entries in the audit log, in the caller's database transaction.

An audit leaf and the ledger entry it describes commit or roll back together. Only
identifiers, counters and amounts go in the leaf: no names, no ID numbers.
"""

from __future__ import annotations

from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.audit.log import append

__all__ = ["Actor", "AuditEvent", "AuditKind", "append"]

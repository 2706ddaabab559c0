"""Ledger and transaction entries in the audit log, in the caller's database transaction.

An audit leaf and the ledger entry it describes commit or roll back together. Only
identifiers, counters and amounts go in the leaf: no names, no ID numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from cardsvc.audit.log import append as _append


def append(
    session: Session,
    *,
    kind: str,
    actor: str,
    subject: str,
    data: Mapping[str, object],
    now: datetime,
) -> None:
    """Append one audit leaf in ``session``'s transaction."""
    _append(session, kind=kind, actor=actor[:128], subject=subject, data=data, now=now)

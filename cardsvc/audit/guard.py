"""The flush guard: a write session cannot commit an audited row without its audit event.

Before each flush of a :class:`~cardsvc.db.session.WriteSession`, every audited row in it
(new rows of :data:`AUDITED_TABLES`, and rows whose :data:`AUDITED_COLUMNS` changed) is
owed an event; :func:`cardsvc.audit.log.append` settles the debt of the row its event
names (``AuditEvent.row``), before or after the flush. At commit any debt left raises
:class:`MissingAuditEventError` and the transaction rolls back: a writer that forgets its
event fails in every test that runs it, instead of leaving a hole ``audit verify`` finds
later. Rows written with Core statements (batch issuance) append in bulk in the same
transaction and are not seen here.

Tables are named rather than imported: the packages that own them import the audit log.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from cardsvc.audit.events import AuditError
from cardsvc.db.session import WriteSession

#: Every new row of these tables has an audit event.
AUDITED_TABLES = frozenset(
    {
        "persons",
        "person_changes",
        "card_events",
        "ecards",
        "entitlements",
        "transactions",
        "transaction_holds",
        "conflict_reviews",
    }
)
#: A change of these columns has an audit event (a chip binding, a partner's policy).
AUDITED_COLUMNS = {
    "cards": ("chip_kid", "document"),
    "partners": ("purposes", "rate_limit_per_minute"),
}

_OWED = "cardsvc.audit.owed"
_COVERED = "cardsvc.audit.covered"


class MissingAuditEventError(AuditError):
    """An audited row was written without its audit event (a bug in the writer)."""

    code = "audit-missing-event"

    def __init__(self, rows: list[str]) -> None:
        super().__init__(
            f"{len(rows)} audited row(s) written without an audit event: {', '.join(rows[:5])}"
        )
        self.rows = rows


def _table(obj: object) -> str:
    return str(getattr(getattr(obj, "__table__", None), "name", ""))


def _ledger(session: Session, key: str) -> dict[int, object]:
    ledger: dict[int, object] = session.info.setdefault(key, {})
    return ledger


def covered(session: Session, row: object) -> None:
    """``row``'s audit event is in ``session``'s transaction."""
    _ledger(session, _COVERED)[id(row)] = row  # the object is kept: ids are not reused
    _ledger(session, _OWED).pop(id(row), None)


def _owe(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    owed, done = _ledger(session, _OWED), _ledger(session, _COVERED)
    for obj in session.new:
        if _table(obj) in AUDITED_TABLES and id(obj) not in done:
            owed[id(obj)] = obj
    for obj in session.dirty:
        columns = AUDITED_COLUMNS.get(_table(obj))
        if columns and id(obj) not in done:
            attrs = inspect(obj).attrs
            if any(attrs[c].history.has_changes() for c in columns):
                owed[id(obj)] = obj


def _settle(session: Session) -> None:
    session.flush()  # before_commit runs before the commit's own flush: see every row
    owed = _ledger(session, _OWED)
    if owed:
        rows = [f"{_table(o)} {inspect(o).identity or '(new)'}" for o in owed.values()]
        raise MissingAuditEventError(rows)


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_OWED, None)
    session.info.pop(_COVERED, None)


# Listeners on our own session class (not on Session): read sessions and other engines'
# sessions are untouched. Registered once, when the audit log is first imported.
event.listen(WriteSession, "before_flush", _owe)
event.listen(WriteSession, "before_commit", _settle)
event.listen(WriteSession, "after_commit", _forget)
event.listen(WriteSession, "after_rollback", _forget)

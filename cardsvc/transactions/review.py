"""Review of what offline sync held instead of paying: conflicts and forks.

Two kinds of evidence wait for a reviewer: transactions stored in state ``conflict``
(entitlement already collected, reused or decreasing card counter, card status, damaged
journal) and records held as forks (``transaction_holds``: another record on a taken or
voided terminal seq). Each is named by a ref, ``t:<transaction uuid>`` or
``h:<record digest>``, and listed in ref order (holds, then transactions), so a keyset
cursor over the ref pages through both.

A decision (``refused``: not to be paid, e.g. a clone; ``cleared``: legitimate, settled
outside this record) is stored with who, when and why, once per ref, and appended to the
audit log in the same database transaction. A decision never pays: the record stays as it
was synced; a payment owed after review is a new transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.engine import Engine

from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.audit.log import append
from cardsvc.db.models import ConflictReview, TransactionHold, TransactionRow
from cardsvc.db.states import Decision, TransactionState
from cardsvc.registry.db import read_session, write_session
from cardsvc.registry.errors import BadRequestError, ConflictError, NotFoundError

STATES = ("open", "resolved", "all")


class ConflictNotFoundError(NotFoundError):
    code = "conflict-not-found"


class AlreadyResolvedError(ConflictError):
    code = "already-resolved"


@dataclass(frozen=True, kw_only=True)
class ConflictItem:
    ref: str
    kind: str  # transaction | hold
    reason: str
    detail: str
    terminal_id: str
    terminal_seq: int
    received_at: datetime
    transaction_id: uuid.UUID | None
    review: ConflictReview | None


def _split(ref: str) -> tuple[str, str]:
    kind, _, key = ref.partition(":")
    if kind == "t":
        try:
            return kind, str(uuid.UUID(key))
        except ValueError:
            pass
    elif kind == "h" and len(key) == 64 and all(c in "0123456789abcdef" for c in key):
        return kind, key
    raise BadRequestError("a conflict ref is t:<transaction id> or h:<record digest>")


def _from_row(row: TransactionRow, review: ConflictReview | None) -> ConflictItem:
    reason, _, detail = (row.conflict or "conflict").partition(": ")
    return ConflictItem(ref=f"t:{row.id}", kind="transaction", reason=reason, detail=detail,
                        terminal_id=row.terminal_id, terminal_seq=row.terminal_seq,
                        received_at=row.received_at, transaction_id=row.id,
                        review=review)  # fmt: skip


def _from_hold(hold: TransactionHold, review: ConflictReview | None) -> ConflictItem:
    return ConflictItem(ref=f"h:{hold.digest}", kind="hold", reason=hold.reason,
                        detail=hold.detail, terminal_id=hold.terminal_id,
                        terminal_seq=hold.terminal_seq, received_at=hold.received_at,
                        transaction_id=None, review=review)  # fmt: skip


class ReviewService:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list(self, *, state: str, after: str | None, limit: int) -> list[ConflictItem]:
        if state not in STATES:
            raise BadRequestError("state is open, resolved or all")
        after_kind, after_key = _split(after) if after else ("", "")
        items: list[ConflictItem] = []
        with read_session(self._engine) as session:
            if after_kind in ("", "h"):
                holds = select(TransactionHold, ConflictReview).outerjoin(
                    ConflictReview, ConflictReview.hold_digest == TransactionHold.digest
                )
                if after_key:
                    holds = holds.where(TransactionHold.digest > after_key)
                holds = (
                    holds.where(*_review_filter(state))
                    .order_by(TransactionHold.digest)
                    .limit(limit)
                )
                items += [_from_hold(h, r) for h, r in session.execute(holds)]
            if len(items) < limit:
                rows = (
                    select(TransactionRow, ConflictReview)
                    .outerjoin(ConflictReview, ConflictReview.transaction_id == TransactionRow.id)
                    .where(TransactionRow.state == TransactionState.CONFLICT)
                )
                if after_kind == "t":
                    rows = rows.where(TransactionRow.id > uuid.UUID(after_key))
                rows = (
                    rows.where(*_review_filter(state))
                    .order_by(TransactionRow.id)
                    .limit(limit - len(items))
                )
                items += [_from_row(t, r) for t, r in session.execute(rows)]
        return items

    def resolve(
        self, ref: str, *, decision: str, reason: str, actor: Actor, now: datetime
    ) -> ConflictItem:
        try:
            chosen = Decision(decision)
        except ValueError:
            raise BadRequestError("decision is refused or cleared") from None
        kind, key = _split(ref)
        ref = f"{kind}:{key}"
        row: TransactionRow | None = None
        hold: TransactionHold | None = None
        with write_session(self._engine) as session:
            if kind == "t":
                row = session.get(TransactionRow, uuid.UUID(key))
                if row is None or row.state is not TransactionState.CONFLICT:
                    raise ConflictNotFoundError("no conflict with this ref", ref=ref)
                subject, data = f"transaction:{row.id}", {"terminal": row.terminal_id,
                                                          "seq": row.terminal_seq}  # fmt: skip
            else:
                hold = session.get(TransactionHold, key)
                if hold is None:
                    raise ConflictNotFoundError("no held record with this ref", ref=ref)
                subject, data = f"terminal:{hold.terminal_id}", {"seq": hold.terminal_seq,
                                                                 "record": hold.digest}  # fmt: skip
            if session.get(ConflictReview, ref) is not None:
                raise AlreadyResolvedError("this conflict is already resolved", ref=ref)
            review = ConflictReview(
                ref=ref, decision=chosen, reason=reason[:500], reviewed_by=actor,
                reviewed_at=now, audit_index=0,
                transaction_id=uuid.UUID(key) if kind == "t" else None,
                hold_digest=key if kind == "h" else None,
            )  # fmt: skip
            session.add(review)
            session.flush()
            # The decision and its audit leaf commit together (the reason text is not in
            # the leaf: free text may name people; its salted hash is).
            review.audit_index = append(
                session, AuditEvent(kind=AuditKind(f"transaction.review.{decision}"),
                subject=subject, data={**data, "ref": ref, "decision": decision},
                commit={"ref": ref, "decision": decision, "reason": review.reason}, row=review),
                actor=actor, now=now,
            )  # fmt: skip
            if row is not None:
                item = _from_row(row, review)
            else:
                assert hold is not None  # noqa: S101 - one of the two was found above
                item = _from_hold(hold, review)
        return item

    def get(self, ref: str) -> ConflictItem:
        kind, key = _split(ref)
        with read_session(self._engine) as session:
            review = session.get(ConflictReview, f"{kind}:{key}")
            if kind == "t":
                row = session.get(TransactionRow, uuid.UUID(key))
                if row is not None and row.state is TransactionState.CONFLICT:
                    return _from_row(row, review)
            else:
                hold = session.get(TransactionHold, key)
                if hold is not None:
                    return _from_hold(hold, review)
        raise ConflictNotFoundError("no conflict with this ref", ref=f"{kind}:{key}")


def _review_filter(state: str) -> list[ColumnElement[bool]]:
    if state == "open":
        return [ConflictReview.ref.is_(None)]
    if state == "resolved":
        return [ConflictReview.ref.is_not(None)]
    return []

"""Offline batch sync: a terminal uploads its journal's records; each gets an answer.

Rules (DESIGN.md "Counters and transactions", issue 7):

- **Dedup** on (terminal, seq): the same record again is ``duplicate`` (with the outcome it
  had); another record on a taken seq is a **fork**, held for review. On (card, counter):
  another accepted record with the card's counter is a **reused counter** (a clone or a
  replay): stored as ``conflict``, never paid.
- **Out of order** is fine: counters are checked for uniqueness, and for *order* against
  the record times of the same card (a counter lower than one used earlier, beyond a clock
  slack, is a decreasing counter: a clone).
- **Entitlements** are consumed with the ledger's conditional update; one already collected
  (another offline counter) makes the record a ``conflict``. The partial unique indexes
  (``uq_transactions_card_counter``, ``uq_transactions_entitlement``) make paying twice
  impossible even between concurrent uploads.
- **Gaps**: voided sequence numbers are recorded; the answer lists the terminal's seqs that
  are neither records nor voids below its highest (pending upload, or withheld).
- Records a terminal flags ``journal-damaged`` are stored as conflicts for review.

Bad proofs (signature, certificate, unknown card, malformed data) are ``rejected``: not
stored, the terminal keeps them. A whole batch commits at once (each record in a savepoint),
so a dropped connection or a killed issuer leaves the batch all in or all out, and the
retry is answered from what was stored. No Idempotency-Key is needed: every record is
idempotent on its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.auth.clients import Client
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.signing import Signer
from cardsvc.core.transaction import SignedRecord
from cardsvc.db.models import Card, TerminalJournal, TerminalVoid, TransactionHold, TransactionRow
from cardsvc.db.states import Arrival, TransactionState
from cardsvc.ledger import audit
from cardsvc.registry.db import write_session
from cardsvc.transactions.acceptance import (
    AlreadyStored,
    Fork,
    Refused,
    Submission,
)
from cardsvc.transactions.service import TransactionService

MAX_BATCH = 200
MAX_GAPS_LISTED = 100


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    seq: int
    record: SignedRecord | None = None
    void: str | None = None
    flag: str | None = None
    problem: str | None = None  # the record did not parse
    clerk: str | None = None  # the clerk signed in at the counter, as the terminal says


class ItemOutcome(StrEnum):
    """What became of one item of a batch (the terminal's answer)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # stored before: the same record or void again
    CONFLICT = "conflict"  # stored for review, never paid
    REJECTED = "rejected"  # not stored: the terminal keeps it
    RETRY = "retry"  # stored concurrently by another upload: upload it again


@dataclass(frozen=True, kw_only=True)
class ItemResult:
    seq: int
    outcome: ItemOutcome
    reason: str | None = None
    detail: str | None = None
    transaction_id: uuid.UUID | None = None
    receipt: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
            "transaction_id": str(self.transaction_id) if self.transaction_id else None,
            "receipt": self.receipt,
        }


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    results: list[ItemResult]
    gaps: list[int]
    gap_count: int
    highest_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "results": [r.to_json() for r in self.results],
            "journal": {"highest_seq": self.highest_seq, "gap_count": self.gap_count,
                        "gaps": self.gaps},
        }  # fmt: skip


@dataclass
class _Context:
    terminal: Client
    terminal_key: VerifyingKey
    now: datetime
    signer: Signer
    cards: dict[str, Card | None] = field(default_factory=dict)


class BatchService:
    """Accepts a terminal's batch of offline (or late) records."""

    def __init__(self, engine: Engine, transactions: TransactionService) -> None:
        self._engine = engine
        self._tx = transactions

    def upload(
        self, items: Sequence[BatchItem], *, certificate: str, terminal: Client, now: datetime
    ) -> BatchResult:
        cert = self._tx.verify_certificate(certificate, terminal=terminal, now=now)
        signer = self._tx.acceptance.receipt_signer(now=now)
        ctx = _Context(terminal=terminal, terminal_key=cert.key, now=now, signer=signer)
        results: list[ItemResult] = []
        with write_session(self._engine) as session:
            for item in items:
                for attempt in (1, 2):
                    try:
                        with session.begin_nested():
                            results.append(self._one(session, item, ctx))
                        break
                    except IntegrityError:
                        # A concurrent upload stored this seq, counter or entitlement
                        # between our checks and our insert: look again, now it is there.
                        if attempt == 2:
                            results.append(_concurrent(item.seq))
            gaps, count, highest = _gaps(session, terminal.client_id, now=now)
        return BatchResult(results=results, gaps=gaps, gap_count=count, highest_seq=highest)

    # -- one record -------------------------------------------------------------------------

    def _one(self, session: Session, item: BatchItem, ctx: _Context) -> ItemResult:
        terminal_id = ctx.terminal.client_id
        void = session.get(TerminalVoid, (terminal_id, item.seq))
        if item.void is not None:
            existing = session.scalar(
                select(TransactionRow.id).where(
                    TransactionRow.terminal_id == terminal_id,
                    TransactionRow.terminal_seq == item.seq,
                )
            )
            if existing is not None:
                return ItemResult(seq=item.seq, outcome=ItemOutcome.CONFLICT, reason="fork",
                                  detail="the journal voids a seq that holds a record")  # fmt: skip
            if void is not None:
                return ItemResult(seq=item.seq, outcome=ItemOutcome.DUPLICATE, reason="void")
            session.add(TerminalVoid(terminal_id=terminal_id, terminal_seq=item.seq,
                                     reason=item.void[:200], received_at=ctx.now))  # fmt: skip
            session.flush()
            return ItemResult(seq=item.seq, outcome=ItemOutcome.ACCEPTED, reason="void")
        record = item.record
        if item.problem is not None:
            return ItemResult(seq=item.seq, outcome=ItemOutcome.REJECTED, reason="record",
                              detail=item.problem)  # fmt: skip
        if record is None:
            return ItemResult(seq=item.seq, outcome=ItemOutcome.REJECTED, reason="record",
                              detail="an item needs a record or a void")  # fmt: skip
        submission = Submission(
            record=record,
            arrival=Arrival.OFFLINE,
            terminal_id=terminal_id,
            terminal_key=ctx.terminal_key,
            now=ctx.now,
            signer=ctx.signer,
            seq=item.seq,
            flag=item.flag,
            seq_voided=void is not None,
            clerk=item.clerk,
        )
        outcome = self._tx.acceptance.accept(session, submission, cards=ctx.cards)
        if isinstance(outcome, Refused):
            return ItemResult(seq=item.seq, outcome=ItemOutcome.REJECTED, reason=outcome.check,
                              detail=outcome.detail)  # fmt: skip
        if isinstance(outcome, Fork):
            return self._hold(session, item.seq, record, ctx, "fork", outcome.detail)
        if isinstance(outcome, AlreadyStored):
            return ItemResult(seq=item.seq, outcome=ItemOutcome.DUPLICATE,
                              reason=outcome.conflict if outcome.state is TransactionState.CONFLICT
                              else None,
                              detail=f"already {outcome.state}",
                              transaction_id=outcome.transaction_id,
                              receipt=outcome.receipt)  # fmt: skip
        if outcome.conflict:
            reason, detail = outcome.conflict
            return ItemResult(seq=item.seq, outcome=ItemOutcome.CONFLICT, reason=reason,
                              detail=detail, transaction_id=outcome.transaction_id)  # fmt: skip
        return ItemResult(seq=item.seq, outcome=ItemOutcome.ACCEPTED,
                          transaction_id=outcome.transaction_id,
                          receipt=outcome.receipt)  # fmt: skip

    def _hold(
        self, session: Session, seq: int, record: SignedRecord, ctx: _Context, reason: str,
        detail: str,
    ) -> ItemResult:  # fmt: skip
        digest = record.digest()
        if session.get(TransactionHold, digest) is None:
            session.add(hold := TransactionHold(
                digest=digest, terminal_id=ctx.terminal.client_id, terminal_seq=seq,
                reason=reason, detail=detail[:300], record=json.dumps(record.to_json()),
                received_at=ctx.now))  # fmt: skip
            session.flush()
            audit.append(session, audit.AuditEvent(kind=audit.AuditKind.TRANSACTION_HELD,
                         subject=f"terminal:{ctx.terminal.client_id}",
                         data={"seq": seq, "reason": reason, "record": digest}, row=hold),
                         actor=audit.Actor(ctx.terminal.client_id), now=ctx.now)  # fmt: skip
        return ItemResult(seq=seq, outcome=ItemOutcome.CONFLICT, reason=reason, detail=detail)

    @staticmethod
    def _card(session: Session, number: str, ctx: _Context) -> Card | None:
        if number not in ctx.cards:
            ctx.cards[number] = session.scalar(select(Card).where(Card.card_number == number))
        return ctx.cards[number]


def _concurrent(seq: int) -> ItemResult:
    return ItemResult(seq=seq, outcome=ItemOutcome.RETRY, reason="concurrent",
                      detail="stored concurrently; upload again")  # fmt: skip


def _seqs_above(session: Session, terminal_id: str, floor: int) -> set[int]:
    """The terminal's stored seqs above ``floor`` (index range scans)."""
    seqs: set[int] = set()
    for column, terminal in (
        (TransactionRow.terminal_seq, TransactionRow.terminal_id),
        (TerminalVoid.terminal_seq, TerminalVoid.terminal_id),
        (TransactionHold.terminal_seq, TransactionHold.terminal_id),
    ):
        query = select(column).where(terminal == terminal_id, column > floor)
        seqs.update(int(s) for s in session.scalars(query))
    return seqs


def _gaps(session: Session, terminal_id: str, *, now: datetime) -> tuple[list[int], int, int]:
    """Missing seqs below the highest, reading only what lies above the contiguous prefix.

    ``terminal_journals`` keeps the highest seq below which nothing is missing; it only
    grows (stored seqs are never deleted), so each batch reads the seqs above it: the
    out-of-order window, not the terminal's history. The row is locked for the rest of the
    batch's transaction, so concurrent batches of one terminal update it in turn.
    """
    state = session.scalar(
        select(TerminalJournal).where(TerminalJournal.terminal_id == terminal_id).with_for_update()
    )
    floor = state.contiguous if state is not None else 0
    seqs = _seqs_above(session, terminal_id, floor)
    highest = max(seqs, default=floor)
    if state is not None:
        highest = max(highest, state.highest)
    contiguous = floor
    while contiguous + 1 in seqs:
        contiguous += 1
    above = sum(1 for s in seqs if s > contiguous)
    count = highest - contiguous - above  # never a range over a huge jump in seq
    listed: list[int] = []
    candidate = contiguous + 1
    while len(listed) < min(count, MAX_GAPS_LISTED):
        if candidate not in seqs:
            listed.append(candidate)
        candidate += 1
    if state is None:
        try:
            with session.begin_nested():
                session.add(TerminalJournal(terminal_id=terminal_id, contiguous=contiguous,
                                            highest=highest, updated_at=now))  # fmt: skip
        except IntegrityError:  # a concurrent first batch created it: theirs is as good
            pass
    elif (state.contiguous, state.highest) != (contiguous, highest):
        state.contiguous, state.highest, state.updated_at = contiguous, highest, now
    return listed, count, highest


def parse_items(raw: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
    """Batch items from the request (already shape-checked by the route's model)."""
    items: list[BatchItem] = []
    for obj in raw:
        record, problem = None, None
        if obj.get("record") is not None:
            try:
                record = SignedRecord.from_json(obj["record"])
            except CoreError as exc:
                problem = str(exc)
        items.append(BatchItem(seq=int(obj["seq"]), record=record, void=obj.get("void"),
                               flag=obj.get("flag"), problem=problem,
                               clerk=obj.get("clerk_id")))  # fmt: skip
    return items

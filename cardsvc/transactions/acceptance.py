"""The one acceptance pipeline of a signed transaction record, online or in a batch.

Every record, whether a terminal submits it online or uploads it later in a batch, goes
through :meth:`RecordAcceptance.accept` in the caller's database transaction:

1. its data parse, and it names the calling terminal (and, in a batch, the item's seq);
2. online, its time is within ``ONLINE_CLOCK_WINDOW`` of the issuer's clock;
3. dedup on (terminal, seq): the same record again is :class:`AlreadyStored`, another
   record on that seq (or a seq the terminal reported void) a :class:`Fork`;
4. online, the issuer's nonce is consumed (issued to this terminal, unused, unexpired);
5. the card exists and is personalised, and the card's and the terminal's signatures
   verify;
6. the rules a paid record must pass (:meth:`RecordAcceptance._conflict`);
7. the receipt, the transaction row and its audit leaf.

The answer is a value; the caller maps it: the online service raises (and so rolls back,
nonce included), the batch answers each record. Online, a record that breaks a rule is
refused; in a batch it is stored as a conflict for review, never paid, since the
counter already acted on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_encode
from cardsvc.core.receiptcode import receipt_code
from cardsvc.core.signing import Signer
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData, issue_receipt
from cardsvc.db.models import Card, Challenge, TransactionRow
from cardsvc.db.states import Arrival, CardState, TransactionState
from cardsvc.errors import CardsvcError
from cardsvc.keystore.service import KeyService
from cardsvc.ledger import audit
from cardsvc.ledger.errors import EntitlementNotFoundError, EntitlementUnavailableError
from cardsvc.ledger.service import consume

#: An online record's own time may differ from the issuer's clock by this much.
ONLINE_CLOCK_WINDOW = timedelta(minutes=5)
#: Terminal clocks drift: counter order contradicts record times only beyond this.
CLOCK_SLACK = timedelta(minutes=15)
DAMAGED_FLAG = "journal-damaged"


@dataclass(frozen=True, kw_only=True)
class Stored:
    """The record is stored: accepted and paid (with a receipt), or held as a conflict."""

    transaction_id: uuid.UUID
    data: TransactionData
    counter: int
    receipt: str | None
    #: (reason, detail) of a conflict: stored for review, never paid.
    conflict: tuple[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class AlreadyStored:
    """The same record was stored before (a retry): what it became."""

    transaction_id: uuid.UUID
    data: TransactionData
    counter: int
    state: TransactionState
    conflict: str | None
    receipt: str | None


@dataclass(frozen=True, kw_only=True)
class Fork:
    """The terminal's seq already holds another record: nothing is stored here."""

    seq: int
    detail: str


@dataclass(frozen=True, kw_only=True)
class Refused:
    """Not stored; ``check`` names why. ``conflict``: it contradicts what the issuer
    holds (rather than failing a proof); ``error``: the domain error behind it."""

    check: str
    detail: str
    conflict: bool = False
    fields: Mapping[str, Any] = field(default_factory=dict)
    error: CardsvcError | None = None


Outcome = Stored | AlreadyStored | Fork | Refused


#: A clerk's operator client id as a terminal may name it.
CLERK_ID = r"^[A-Za-z0-9._-]{1,64}$"


@dataclass(kw_only=True)
class Submission:
    """One record to accept, and who brought it how."""

    record: SignedRecord
    arrival: Arrival
    terminal_id: str
    terminal_key: VerifyingKey
    now: datetime
    signer: Signer
    #: The batch item's seq, which the record must carry (online: none).
    seq: int | None = None
    #: The terminal's flag on the item (``journal-damaged``).
    flag: str | None = None
    #: The terminal's journal reported this seq void (in an earlier batch).
    seq_voided: bool = False
    #: The clerk signed in at the counter (operator client id), as the authenticated
    #: terminal says; outside the signed record, recorded in the audit event.
    clerk: str | None = None


class RecordAcceptance:
    """Accepts signed transaction records for this issuer (:data:`Outcome` values)."""

    def __init__(self, keys: KeyService, *, issuer: str) -> None:
        self._keys = keys
        self._issuer = issuer

    def receipt_signer(self, *, now: datetime) -> Signer:
        """The key receipts are signed with (take it once per request or batch)."""
        return self._keys.signer(KeyPurpose.TERMINAL_CERTIFICATE, now=now)

    def accept(
        self, session: Session, sub: Submission, *, cards: dict[str, Card | None] | None = None
    ) -> Outcome:
        """Run the pipeline for one record in ``session``; ``cards`` caches card rows
        across the records of one batch."""
        record, now = sub.record, sub.now
        try:
            data = record.transaction
        except CoreError as exc:
            return Refused(check="data", detail=str(exc))
        if data.terminal != sub.terminal_id or (sub.seq is not None and data.seq != sub.seq):
            return Refused(check="terminal", detail="the record names another terminal or seq")
        online = sub.arrival is Arrival.ONLINE
        if online and abs(data.time - now) > ONLINE_CLOCK_WINDOW:
            return Refused(
                check="time", detail="the record's time is too far from the issuer's clock"
            )
        existing = session.scalar(
            select(TransactionRow).where(
                TransactionRow.terminal_id == data.terminal, TransactionRow.terminal_seq == data.seq
            )
        )
        if existing is not None:
            if existing.card_signature != b64url_encode(
                record.card_signature
            ) or existing.data != b64url_encode(record.data):
                detail = f"terminal seq {data.seq} already holds another record"
                return Fork(seq=data.seq, detail=detail)
            return AlreadyStored(
                transaction_id=existing.id,
                data=data,
                counter=existing.card_counter,
                state=existing.state,
                conflict=existing.conflict,
                receipt=existing.receipt,
            )
        if sub.seq_voided:
            return Fork(seq=data.seq, detail=f"terminal seq {data.seq} was reported void")
        if online:
            used = session.execute(
                update(Challenge)
                .where(
                    Challenge.nonce == record.nonce.hex(),
                    Challenge.terminal_id == sub.terminal_id,
                    Challenge.used_at.is_(None),
                    Challenge.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if used != 1:
                return Refused(
                    check="nonce",
                    detail="the nonce was not issued to this terminal, expired or was used",
                )
        card = _card(session, data.card, lock=online, cards=cards)
        if card is None or card.chip_jwk is None:
            return Refused(check="card", detail="no personalised card with this number")
        try:
            record.verify(
                chip_key=VerifyingKey.from_jwk(json.loads(card.chip_jwk)),
                terminal_key=sub.terminal_key,
            )
        except VerificationError as exc:
            return Refused(check=exc.check, detail=exc.detail)
        transaction_id = uuid.uuid4()
        broken = self._conflict(session, sub, data, card, transaction_id)
        if isinstance(broken, Refused):
            return broken
        conflict = broken
        receipt = None
        if conflict is None:
            receipt = issue_receipt(
                sub.signer,
                issuer=self._issuer,
                transaction_id=transaction_id,
                record=record,
                data=data,
                now=now,
            )
        why = f"{conflict[0]}: {conflict[1]}"[:200] if conflict else None
        row = _row(
            transaction_id,
            record,
            data,
            card,
            mode=sub.arrival,
            now=now,
            receipt=receipt,
            state=TransactionState.CONFLICT if conflict else TransactionState.ACCEPTED,
            conflict=why,
        )
        session.add(row)
        session.flush()
        # Each arrival keeps its own leaf shape (what `audit verify` and older logs hold).
        actor = audit.Actor(sub.terminal_id)
        if online:
            event = audit.AuditEvent(
                kind=audit.AuditKind.transaction(data.kind.value),
                subject=f"transaction:{transaction_id}",
                data={"card": str(card.id), "counter": record.counter,
                      "amount_fen": data.amount_fen, "seq": data.seq,
                      "entitlement": str(data.entitlement) if data.entitlement else None},
                row=row,
            )  # fmt: skip
        else:
            event = audit.AuditEvent(
                kind=audit.AuditKind.transaction(data.kind.value, conflict=bool(conflict)),
                subject=f"transaction:{transaction_id}",
                data={"card": str(card.id), "counter": record.counter, "seq": data.seq,
                      "amount_fen": data.amount_fen, "mode": "offline",
                      "conflict": conflict[0] if conflict else None,
                      "entitlement": str(data.entitlement) if data.entitlement else None},
                row=row,
            )  # fmt: skip
        if sub.clerk is not None:  # older leaves (and clerk-less counters) have no member
            event = replace(event, data={**event.data, "clerk": sub.clerk})
        audit.append(session, event, actor=actor, now=now)
        return Stored(
            transaction_id=transaction_id,
            data=data,
            counter=record.counter,
            receipt=receipt,
            conflict=conflict,
        )

    def _conflict(
        self,
        session: Session,
        sub: Submission,
        data: TransactionData,
        card: Card,
        transaction_id: uuid.UUID,
    ) -> tuple[str, str] | Refused | None:
        """What stops this verified record from being paid: a conflict to store for
        review (in a batch), a refusal (online), or None, and then it is paid (a
        benefit's entitlement is consumed here)."""
        record, now = sub.record, sub.now
        if sub.arrival is Arrival.ONLINE:
            if card.state is not CardState.ACTIVE or card.expiry_date < now.date():
                return Refused(check="card-status", detail=f"the card is {card.state}")
            # Online the card signs in real time: its counter must be above every one.
            highest = session.scalar(
                select(func.max(TransactionRow.card_counter)).where(
                    TransactionRow.card_id == card.id,
                    TransactionRow.state == TransactionState.ACCEPTED,
                )
            )
            if highest is not None and record.counter <= highest:
                return Refused(
                    check="counter",
                    detail=f"card counter {record.counter} is not above {highest}: "
                    "a replay or a clone",
                    conflict=True,
                    fields={"highest_counter": highest},
                )
        else:
            found = _offline_conflict(session, sub, data, card)
            if found is not None:
                return found
        if data.kind is Kind.BENEFIT:
            assert data.entitlement is not None  # noqa: S101 - TransactionData checks
            try:
                with session.begin_nested():
                    consume(
                        session,
                        data.entitlement,
                        person_id=card.person_id,
                        amount_fen=data.amount_fen,
                        transaction_id=transaction_id,
                        now=now,
                    )
            except (EntitlementNotFoundError, EntitlementUnavailableError) as exc:
                if sub.arrival is Arrival.ONLINE:
                    return Refused(check="entitlement", detail=exc.detail, conflict=True, error=exc)
                return ("entitlement", exc.detail)
        return None


def _offline_conflict(
    session: Session, sub: Submission, data: TransactionData, card: Card
) -> tuple[str, str] | None:
    """A batch record's counter may come late and out of order, but never twice, and
    never against the order of the same card's record times (beyond ``CLOCK_SLACK``)."""
    record = sub.record
    if sub.flag == DAMAGED_FLAG:
        return ("journal-damaged", "from a damaged part of the terminal's journal")
    same = session.scalar(
        select(TransactionRow.id).where(
            TransactionRow.card_id == card.id,
            TransactionRow.card_counter == record.counter,
            TransactionRow.state == TransactionState.ACCEPTED,
        )
    )
    if same is not None:
        return ("counter-reused",
                f"card counter {record.counter} is already used by transaction {same}: "
                "a clone or a replay")  # fmt: skip
    time = data.time
    contradiction = session.scalar(
        select(TransactionRow.card_counter)
        .where(
            TransactionRow.card_id == card.id,
            TransactionRow.state == TransactionState.ACCEPTED,
            (
                (TransactionRow.card_counter < record.counter)
                & (TransactionRow.at > time + CLOCK_SLACK)
            )
            | (
                (TransactionRow.card_counter > record.counter)
                & (TransactionRow.at < time - CLOCK_SLACK)
            ),
        )
        .limit(1)
    )
    if contradiction is not None:
        return ("counter-order",
                f"card counter {record.counter} contradicts counter {contradiction} of the "
                "same card at another time: a decreasing counter (a clone)")  # fmt: skip
    if card.state is not CardState.ACTIVE:
        return ("card-status", f"the card is {card.state} at the issuer")
    return None


def _card(
    session: Session, number: str, *, lock: bool, cards: dict[str, Card | None] | None
) -> Card | None:
    if cards is not None and number in cards:
        return cards[number]
    query = select(Card).where(Card.card_number == number)
    # Online, concurrent records of one card take their counter checks in turn.
    found = session.scalar(query.with_for_update() if lock else query)
    if cards is not None:
        cards[number] = found
    return found


def _row(
    transaction_id: uuid.UUID,
    record: SignedRecord,
    data: TransactionData,
    card: Card,
    *,
    mode: Arrival,
    now: datetime,
    receipt: str | None,
    state: TransactionState = TransactionState.ACCEPTED,
    conflict: str | None = None,
) -> TransactionRow:
    return TransactionRow(
        id=transaction_id,
        kind=data.kind,
        mode=mode,
        state=state,
        conflict=conflict,
        card_id=card.id,
        person_id=card.person_id,
        terminal_id=data.terminal,
        terminal_seq=data.seq,
        card_counter=record.counter,
        amount_fen=data.amount_fen,
        currency=data.currency,
        entitlement_id=data.entitlement,
        reference=data.reference,
        at=data.time,
        received_at=now,
        nonce=record.nonce.hex(),
        data=b64url_encode(record.data),
        card_signature=b64url_encode(record.card_signature),
        terminal_signature=b64url_encode(record.terminal_signature),
        receipt=receipt,
        receipt_code=receipt_code(record),
    )

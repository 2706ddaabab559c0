"""Tables of counter transactions (revision 0006), offline batches and conflict review."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.core.transaction import Kind
from cardsvc.db.models.base import Base, UtcDateTime, state_type
from cardsvc.db.states import Arrival, Decision, IdempotencyState, TransactionState


class Challenge(Base):
    """A nonce the issuer handed to one terminal, to be signed by a card once."""

    __tablename__ = "transaction_challenges"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)  # hex
    terminal_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class TransactionRow(Base):
    """One authorisation with its proof: card-signed data, nonce, counter, signatures."""

    __tablename__ = "transactions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[Kind] = mapped_column(state_type(Kind, 16))
    mode: Mapped[Arrival] = mapped_column(state_type(Arrival, 8))
    state: Mapped[TransactionState] = mapped_column(state_type(TransactionState, 16))
    conflict: Mapped[str | None] = mapped_column(String(200), nullable=True)
    card_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("cards.id"))
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    terminal_id: Mapped[str] = mapped_column(String(64))
    terminal_seq: Mapped[int] = mapped_column(BigInteger)
    card_counter: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    entitlement_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("entitlements.id"), nullable=True
    )
    reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    nonce: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)
    card_signature: Mapped[str] = mapped_column(String(100))
    terminal_signature: Mapped[str] = mapped_column(String(100))
    receipt: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The printed receipt's verification code (revision 0011; cardsvc.core.receiptcode).
    receipt_code: Mapped[str | None] = mapped_column(String(12), nullable=True, index=True)


class IdempotencyRecord(Base):
    """One Idempotency-Key of one client: the request's hash and, once done, its answer."""

    __tablename__ = "idempotency_records"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[IdempotencyState] = mapped_column(state_type(IdempotencyState, 16))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class TerminalVoid(Base):
    __tablename__ = "terminal_voids"

    terminal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    terminal_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)




class TerminalJournal(Base):
    """Every seq 1..contiguous of the terminal is stored (record, void or held fork)."""

    __tablename__ = "terminal_journals"

    terminal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contiguous: Mapped[int] = mapped_column(BigInteger)
    highest: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)




class TransactionHold(Base):
    """A record that cannot be a transaction row (a fork), kept for review."""

    __tablename__ = "transaction_holds"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(String(64))
    terminal_seq: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(300))
    record: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ConflictReview(Base):
    __tablename__ = "conflict_reviews"
    __table_args__ = (
        CheckConstraint("decision IN ('refused', 'cleared')", name="ck_conflict_reviews_decision"),
    )

    ref: Mapped[str] = mapped_column(String(80), primary_key=True)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, unique=True)
    hold_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    decision: Mapped[Decision] = mapped_column(state_type(Decision, 16))
    reason: Mapped[str] = mapped_column(String(500))
    reviewed_by: Mapped[str] = mapped_column(String(128))
    reviewed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    audit_index: Mapped[int] = mapped_column(BigInteger)

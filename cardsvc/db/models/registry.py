"""The registry's tables: persons, cards, their events, status shards, e-cards, codes."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.models.base import Base, BigId, UtcDateTime, state_type
from cardsvc.db.states import ActivationChannel, ActivationCodeState, CardState, ECardState

#: Card states in which a card counts as the person's one live card.
LIVE_STATES = (CardState.PENDING_PERSONALIZATION, CardState.ACTIVE, CardState.SUSPENDED)
# The constraints and partial indexes, as the migrations wrote them.
_LIVE = "state IN ('pending_personalization', 'active', 'suspended')"
_STATES = "state IN ('pending_personalization', 'active', 'suspended', 'revoked', 'expired')"


# BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER primary key.


class Person(Base):
    """An enrolled person, identified by their citizen ID number (unique)."""

    __tablename__ = "persons"
    __table_args__ = (
        CheckConstraint("sex IN ('M', 'F')", name="ck_persons_sex"),
        UniqueConstraint("citizen_id", name="uq_persons_citizen_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    citizen_id: Mapped[str] = mapped_column(String(18))
    name: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date] = mapped_column(Date)
    region_code: Mapped[str] = mapped_column(String(6))
    deceased_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PersonChange(Base):
    """A recorded change to a person: which field, old and new value, who, when and why."""

    __tablename__ = "person_changes"
    __table_args__ = (Index("ix_person_changes_person_id", "person_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    field: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(String(256), nullable=True)
    new_value: Mapped[str | None] = mapped_column(String(256), nullable=True)
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class StatusShard(Base):
    """One status list (shard): its size and whether it still takes new indexes."""

    __tablename__ = "status_shards"
    __table_args__ = (CheckConstraint("size >= 131072", name="ck_status_shards_size"),)

    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(Integer)
    bits: Mapped[int] = mapped_column(Integer)
    closed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Card(Base):
    """A physical card: number, dates, state, status-list index, chip key and document."""

    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint(_STATES, name="ck_cards_state"),
        CheckConstraint("status_idx >= 0", name="ck_cards_status_idx"),
        CheckConstraint("expiry_date > issue_date", name="ck_cards_dates"),
        UniqueConstraint("card_number", name="uq_cards_card_number"),
        UniqueConstraint("status_shard", "status_idx", name="uq_cards_status_index"),
        # Covering: loading a shard is an index-only range scan (revision 0013).
        Index("ix_cards_status_entries", "status_shard", "status_idx", "state"),
        UniqueConstraint("chip_kid", name="uq_cards_chip_kid"),
        UniqueConstraint("request_key", name="uq_cards_request_key"),
        Index("ix_cards_person_id", "person_id"),
        Index(
            "uq_cards_one_live_per_person",
            "person_id",
            unique=True,
            sqlite_where=text(_LIVE),
            postgresql_where=text(_LIVE),
        ),
        Index(
            "ix_cards_suspended_until",
            "suspended_until",
            sqlite_where=text("suspended_until IS NOT NULL"),
            postgresql_where=text("suspended_until IS NOT NULL"),
        ),
        Index(
            "ix_cards_live_expiry",
            "expiry_date",
            sqlite_where=text(_LIVE),
            postgresql_where=text(_LIVE),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    card_number: Mapped[str] = mapped_column(String(9))
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    state: Mapped[CardState] = mapped_column(state_type(CardState, 32))
    issue_date: Mapped[date] = mapped_column(Date)
    expiry_date: Mapped[date] = mapped_column(Date)
    status_shard: Mapped[int] = mapped_column(Integer, ForeignKey("status_shards.shard"))
    status_idx: Mapped[int] = mapped_column(Integer)
    suspended_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    replaces_card_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("cards.id"), nullable=True
    )
    chip_kid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    chip_jwk: Mapped[str | None] = mapped_column(Text, nullable=True)
    document: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CardEvent(Base):
    """One lifecycle change of a card: action, states, who, when and why (append-only)."""

    __tablename__ = "card_events"
    __table_args__ = (Index("ix_card_events_card_id", "card_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("cards.id"))
    #: The card's holder: the distribution key (revision 0013; cardsvc.db.distribution).
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[CardState | None] = mapped_column(state_type(CardState, 32), nullable=True)
    to_state: Mapped[CardState] = mapped_column(state_type(CardState, 32))
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- e-cards (revision 0005) --------------------------------------------------------------

_ECARD_STATES = "state IN ('active', 'replaced', 'revoked')"


class ECard(Base):
    """An e-card: one device key bound for a person, following one physical card.

    Its status-list entry lives in the same shards as cards (``(status_shard, status_idx)``
    is allocated by the same allocator). Binding a new device replaces the active e-card.
    """

    __tablename__ = "ecards"
    __table_args__ = (
        CheckConstraint(_ECARD_STATES, name="ck_ecards_state"),
        CheckConstraint("status_idx >= 0", name="ck_ecards_status_idx"),
        UniqueConstraint("ref", name="uq_ecards_ref"),
        UniqueConstraint("status_shard", "status_idx", name="uq_ecards_status_index"),
        Index("ix_ecards_status_entries", "status_shard", "status_idx", "state", "card_id"),
        Index("ix_ecards_card_id", "card_id"),
        Index(
            "uq_ecards_one_active_per_person",
            "person_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        # A wallet activated at a counter finds its e-card by its device key
        # (GET /v1/ecards/device-binding).
        Index("ix_ecards_device_kid", "device_kid"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    ref: Mapped[str] = mapped_column(String(16))  # 8 random bytes, hex: the QR token's ref
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    card_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("cards.id"))
    state: Mapped[ECardState] = mapped_column(state_type(ECardState, 16))
    status_shard: Mapped[int] = mapped_column(Integer, ForeignKey("status_shards.shard"))
    status_idx: Mapped[int] = mapped_column(Integer)
    device_kid: Mapped[str] = mapped_column(String(64))
    device_jwk: Mapped[str] = mapped_column(Text)
    activated_via: Mapped[ActivationChannel] = mapped_column(state_type(ActivationChannel, 16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ActivationCode(Base):
    """A one-time e-card activation code: stored hashed, expiring, with limited attempts."""

    __tablename__ = "ecard_activation_codes"
    __table_args__ = (
        CheckConstraint(
            "state IN ('open', 'used', 'locked', 'superseded')", name="ck_activation_codes_state"
        ),
        CheckConstraint("attempts >= 0", name="ck_activation_codes_attempts"),
        Index("ix_activation_codes_person_id", "person_id", "state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    salt: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(128))
    state: Mapped[ActivationCodeState] = mapped_column(state_type(ActivationCodeState, 16))
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

"""The benefit ledger's table (revision 0006)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.models.base import Base, UtcDateTime, state_type
from cardsvc.db.states import EntitlementState


class Entitlement(Base):
    """What one person is owed for one benefit and period; collected at most once."""

    __tablename__ = "entitlements"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("persons.id"))
    benefit: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[EntitlementState] = mapped_column(state_type(EntitlementState, 16))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    stopped_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

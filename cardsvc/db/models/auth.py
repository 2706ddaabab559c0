"""The client registry's table: every operator and machine client, with its public key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.models.base import Base, state_type
from cardsvc.db.states import ClientKind, ClientStatus, Role


class ClientRow(Base):
    """An OAuth2 client: an operator (with a role) or a terminal or partner (with scopes)."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[ClientKind] = mapped_column(state_type(ClientKind, 16))
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[Role | None] = mapped_column(state_type(Role, 16), nullable=True)
    scopes: Mapped[str] = mapped_column(Text)  # space-separated
    jwk: Mapped[str] = mapped_column(Text)  # public JWK (JSON) for private_key_jwt
    status: Mapped[ClientStatus] = mapped_column(state_type(ClientStatus, 16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))


class PartnerRow(Base):
    """A partner client's policy: the purposes it may verify and its rate limit (0009)."""

    __tablename__ = "partners"

    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id"), primary_key=True
    )
    purposes: Mapped[str] = mapped_column(Text)  # space-separated
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

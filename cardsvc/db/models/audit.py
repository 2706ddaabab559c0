"""The audit log's tables (revision 0004).

Mapped like every other table; the log itself writes and reads them with Core statements
on their ``Table`` objects (``audit_leaves`` ...), which keeps bulk inserts cheap.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.models.base import Base, BigId, UtcDateTime


class AuditState(Base):
    """One row: the log's size (the number of leaves)."""

    __tablename__ = "audit_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)


class AuditLeaf(Base):
    __tablename__ = "audit_leaves"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    kind: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    data: Mapped[str] = mapped_column(Text)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))


class AuditNode(Base):
    """A complete subtree's hash: ``level`` above the leaves, ``idx`` from the left."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kid: Mapped[str] = mapped_column(String(128))
    jws: Mapped[str] = mapped_column(Text)


audit_state = cast(Table, AuditState.__table__)
audit_leaves = cast(Table, AuditLeaf.__table__)
audit_nodes = cast(Table, AuditNode.__table__)
audit_checkpoints = cast(Table, AuditCheckpoint.__table__)

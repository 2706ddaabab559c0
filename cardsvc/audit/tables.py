"""The audit tables of revision 0004, as SQLAlchemy Core tables (inserts stay cheap)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

from cardsvc.db.models import UtcDateTime

metadata = MetaData()

_Id = BigInteger().with_variant(Integer(), "sqlite")

audit_state = Table(
    "audit_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

audit_leaves = Table(
    "audit_leaves",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("kind", String(48), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("data", Text, nullable=False),
    Column("salt", LargeBinary(16), nullable=False),
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kid", String(128), nullable=False),
    Column("jws", Text, nullable=False),
)

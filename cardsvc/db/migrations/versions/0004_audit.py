"""Tamper-evident audit log: Merkle leaves, stored subtree hashes, signed checkpoints.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # One row: the tree size. Appends take its row lock (UPDATE ... RETURNING), so
    # concurrent transactions get unique consecutive leaf indexes.
    op.create_table(
        "audit_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_state_single_row"),
        sa.CheckConstraint("size >= 0", name="ck_audit_state_size"),
    )
    op.execute("INSERT INTO audit_state (id, size) VALUES (1, 0)")
    op.create_table(
        "audit_leaves",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        # Canonical JSON whose RFC 6962 leaf hash is leaf_hash (no personal data).
        sa.Column("data", sa.Text(), nullable=False),
        # Private salt of the commitments in data; never published.
        sa.Column("salt", sa.LargeBinary(16), nullable=False),
        sa.CheckConstraint("idx >= 0", name="ck_audit_leaves_idx"),
    )
    op.create_index("ix_audit_leaves_subject", "audit_leaves", ["subject", "idx"])
    # Hashes of complete subtrees of 2**level leaves, level >= 1 (level 0 is audit_leaves).
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.CheckConstraint("level >= 1", name="ck_audit_nodes_level"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kid", sa.String(128), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.CheckConstraint("size >= 0", name="ck_audit_checkpoints_size"),
    )
    op.create_index("ix_audit_checkpoints_size", "audit_checkpoints", ["size"])


def downgrade() -> None:
    op.drop_index("ix_audit_checkpoints_size", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")
    op.drop_index("ix_audit_leaves_subject", table_name="audit_leaves")
    op.drop_table("audit_leaves")
    op.drop_table("audit_state")

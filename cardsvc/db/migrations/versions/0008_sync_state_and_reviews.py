"""Offline sync state per terminal (highest contiguous seq) and conflict reviews.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each terminal's journal as the issuer has it: every seq 1..contiguous is a record, a
    # void or a held fork; highest is the largest seen. A batch then reads only the seqs
    # above `contiguous` to report gaps, not the terminal's whole history. A terminal
    # without a row is computed from scratch once (databases upgraded with history).
    op.create_table(
        "terminal_journals",
        sa.Column("terminal_id", sa.String(64), primary_key=True),
        sa.Column("contiguous", sa.BigInteger(), nullable=False),
        sa.Column("highest", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # A reviewer's decision on a conflict (a transaction in state 'conflict', ref
    # "t:<uuid>") or a held fork (ref "h:<digest>"): who, when, why. One per ref.
    op.create_table(
        "conflict_reviews",
        sa.Column("ref", sa.String(80), primary_key=True),
        sa.Column(
            "transaction_id",
            sa.Uuid(),
            sa.ForeignKey("transactions.id"),
            nullable=True,
            unique=True,
        ),
        sa.Column(
            "hold_digest",
            sa.String(64),
            sa.ForeignKey("transaction_holds.digest"),
            nullable=True,
            unique=True,
        ),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("reviewed_by", sa.String(128), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_index", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('refused', 'cleared')", name="ck_conflict_reviews_decision"
        ),
    )


def downgrade() -> None:
    op.drop_table("conflict_reviews")
    op.drop_table("terminal_journals")

"""Offline batch sync: voided terminal sequence numbers and records held for review.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A sequence number a terminal's journal voided (torn: the card never signed), so the
    # issuer can tell a reported hole from a gap.
    op.create_table(
        "terminal_voids",
        sa.Column("terminal_id", sa.String(64), primary_key=True),
        sa.Column("terminal_seq", sa.BigInteger(), primary_key=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Records that cannot sit in `transactions` (a fork: a second, different record on a
    # (terminal, seq) already taken), kept as evidence for review, never paid.
    op.create_table(
        "transaction_holds",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("terminal_seq", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_transaction_holds_terminal", "transaction_holds",
                    ["terminal_id", "terminal_seq"])  # fmt: skip
    op.create_index("ix_transactions_card_at", "transactions", ["card_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_transactions_card_at", table_name="transactions")
    op.drop_index("ix_transaction_holds_terminal", table_name="transaction_holds")
    op.drop_table("transaction_holds")
    op.drop_table("terminal_voids")

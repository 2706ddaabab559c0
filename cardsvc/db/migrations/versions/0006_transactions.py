"""Benefit ledger and counter transactions: entitlements, challenges, transactions,
idempotency records.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ACCEPTED = "state = 'accepted'"


def upgrade() -> None:
    op.create_table(
        "entitlements",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("person_id", sa.Uuid(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("benefit", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("stopped_reason", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name="ck_entitlements_amount"),
        sa.CheckConstraint("currency = 'CNY'", name="ck_entitlements_currency"),
        sa.CheckConstraint(
            "state IN ('open', 'collected', 'stopped')", name="ck_entitlements_state"
        ),
        sa.CheckConstraint(
            "(state = 'collected') = (transaction_id IS NOT NULL)",
            name="ck_entitlements_collected_by",
        ),
        sa.UniqueConstraint("person_id", "benefit", "period", name="uq_entitlements_once"),
    )
    op.create_table(
        "transaction_challenges",
        sa.Column("nonce", sa.String(32), primary_key=True),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_transaction_challenges_expires", "transaction_challenges", ["expires_at"])
    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("conflict", sa.String(200), nullable=True),
        sa.Column("card_id", sa.Uuid(), sa.ForeignKey("cards.id"), nullable=False),
        sa.Column("person_id", sa.Uuid(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("terminal_seq", sa.BigInteger(), nullable=False),
        sa.Column("card_counter", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("entitlement_id", sa.Uuid(), sa.ForeignKey("entitlements.id"), nullable=True),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        # The proof: the card-signed data, nonce, counter and both signatures (base64url).
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("card_signature", sa.String(100), nullable=False),
        sa.Column("terminal_signature", sa.String(100), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('identity', 'benefit', 'fee')", name="ck_transactions_kind"),
        sa.CheckConstraint("mode IN ('online', 'offline')", name="ck_transactions_mode"),
        sa.CheckConstraint("state IN ('accepted', 'conflict')", name="ck_transactions_state"),
        sa.CheckConstraint("amount_fen >= 0", name="ck_transactions_amount"),
        sa.CheckConstraint("card_counter >= 1", name="ck_transactions_counter"),
        sa.CheckConstraint("terminal_seq >= 1", name="ck_transactions_seq"),
        sa.UniqueConstraint("terminal_id", "terminal_seq", name="uq_transactions_terminal_seq"),
    )
    # (card, counter) is unique among accepted records; a conflicting duplicate is kept
    # (state 'conflict') as evidence, never paid.
    op.create_index(
        "uq_transactions_card_counter",
        "transactions",
        ["card_id", "card_counter"],
        unique=True,
        sqlite_where=sa.text(_ACCEPTED),
        postgresql_where=sa.text(_ACCEPTED),
    )
    op.create_index(
        "uq_transactions_entitlement",
        "transactions",
        ["entitlement_id"],
        unique=True,
        sqlite_where=sa.text(_ACCEPTED + " AND entitlement_id IS NOT NULL"),
        postgresql_where=sa.text(_ACCEPTED + " AND entitlement_id IS NOT NULL"),
    )
    op.create_index("ix_transactions_person", "transactions", ["person_id", "at"])
    op.create_table(
        "idempotency_records",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('in_flight', 'done')", name="ck_idempotency_state"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_records")
    op.drop_index("ix_transactions_person", table_name="transactions")
    op.drop_index("uq_transactions_entitlement", table_name="transactions")
    op.drop_index("uq_transactions_card_counter", table_name="transactions")
    op.drop_table("transactions")
    op.drop_index("ix_transaction_challenges_expires", table_name="transaction_challenges")
    op.drop_table("transaction_challenges")
    op.drop_table("entitlements")

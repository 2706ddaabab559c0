"""The verification code of each transaction's receipt (cardsvc.core.receiptcode).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cardsvc.core.keys import b64url_decode
from cardsvc.core.receiptcode import receipt_code
from cardsvc.core.transaction import SignedRecord

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ROWS = sa.table(
    "transactions",
    sa.column("id", sa.Uuid()),
    sa.column("nonce", sa.String()),
    sa.column("data", sa.Text()),
    sa.column("card_counter", sa.BigInteger()),
    sa.column("card_signature", sa.String()),
    sa.column("terminal_signature", sa.String()),
    sa.column("receipt_code", sa.String()),
)


def upgrade() -> None:
    # Derived from the signed record alone, so a counter prints it before any sync; the
    # rows stored before this revision get theirs computed here.
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("receipt_code", sa.String(12), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_ROWS.c.id, _ROWS.c.nonce, _ROWS.c.data, _ROWS.c.card_counter,
                  _ROWS.c.card_signature, _ROWS.c.terminal_signature)
    ).all()
    for row in rows:
        record = SignedRecord(
            nonce=bytes.fromhex(row.nonce), data=b64url_decode(row.data),
            counter=int(row.card_counter), card_signature=b64url_decode(row.card_signature),
            terminal_signature=b64url_decode(row.terminal_signature),
        )  # fmt: skip
        connection.execute(
            sa.update(_ROWS).where(_ROWS.c.id == row.id).values(receipt_code=receipt_code(record))
        )
    op.create_index("ix_transactions_receipt_code", "transactions", ["receipt_code"])


def downgrade() -> None:
    op.drop_index("ix_transactions_receipt_code", "transactions")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("receipt_code")

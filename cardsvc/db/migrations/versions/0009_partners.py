"""Partner policies (allowed purposes, rate limit) and the verifier bundle version counter.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What a partner client may verify: the purposes (space-separated, a subset of the QR
    # token purposes) and how many verify requests per minute it may make.
    op.create_table(
        "partners",
        sa.Column("client_id", sa.String(64), sa.ForeignKey("clients.client_id"), primary_key=True),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rate_limit_per_minute > 0", name="ck_partners_rate_limit"),
    )
    # Every verifier bundle version ever minted: when it was signed and what it held (a
    # content hash per shard and of the trust list's keys), so versions stay monotonic
    # across restarts and a delta since N holds only the shards whose content changed.
    op.create_table(
        "verifier_bundles",
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contents", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("verifier_bundles")
    op.drop_table("partners")

"""Status list contents per bundle version, so a delta can carry changed entries only.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The status_list claim ({"bits", "lst"}) of every shard content a bundle version held,
    # addressed by the content hash that verifier_bundles.contents names: an unchanged
    # shard is stored once however many versions hold it. An entry-level delta since N
    # diffs the list stored for N against the current one; versions minted before this
    # table (no row) fall back to carrying the changed shard whole.
    op.create_table(
        "verifier_bundle_shards",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("status_list", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("verifier_bundle_shards")

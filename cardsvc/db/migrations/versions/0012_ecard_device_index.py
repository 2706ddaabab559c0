"""E-cards by device key: a wallet activated at a counter finds its e-card by its key
(GET /v1/ecards/device-binding).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ecards_device_kid", "ecards", ["device_kid"])


def downgrade() -> None:
    op.drop_index("ix_ecards_device_kid", table_name="ecards")

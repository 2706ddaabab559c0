"""OAuth2 clients: operators, terminals and partners with their public keys.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("jwk", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.CheckConstraint("kind IN ('operator', 'terminal', 'partner')", name="ck_client_kind"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="ck_client_status"),
        sa.CheckConstraint(
            "(kind = 'operator') = (role IS NOT NULL)", name="ck_client_role_for_operators"
        ),
    )


def downgrade() -> None:
    op.drop_table("clients")

"""E-cards (device bindings with their own status-list entries) and activation codes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ecards",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("ref", sa.String(16), nullable=False),
        sa.Column("person_id", sa.Uuid(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("card_id", sa.Uuid(), sa.ForeignKey("cards.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "status_shard", sa.Integer(), sa.ForeignKey("status_shards.shard"), nullable=False
        ),
        sa.Column("status_idx", sa.Integer(), nullable=False),
        sa.Column("device_kid", sa.String(64), nullable=False),
        sa.Column("device_jwk", sa.Text(), nullable=False),
        sa.Column("activated_via", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('active', 'replaced', 'revoked')", name="ck_ecards_state"),
        sa.CheckConstraint("status_idx >= 0", name="ck_ecards_status_idx"),
        sa.UniqueConstraint("ref", name="uq_ecards_ref"),
        sa.UniqueConstraint("status_shard", "status_idx", name="uq_ecards_status_index"),
    )
    op.create_index("ix_ecards_card_id", "ecards", ["card_id"])
    op.create_index(
        "uq_ecards_one_active_per_person",
        "ecards",
        ["person_id"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_table(
        "ecard_activation_codes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("person_id", sa.Uuid(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('open', 'used', 'locked', 'superseded')", name="ck_activation_codes_state"
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_activation_codes_attempts"),
    )
    op.create_index(
        "ix_activation_codes_person_id", "ecard_activation_codes", ["person_id", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_activation_codes_person_id", table_name="ecard_activation_codes")
    op.drop_table("ecard_activation_codes")
    op.drop_index("uq_ecards_one_active_per_person", table_name="ecards")
    op.drop_index("ix_ecards_card_id", table_name="ecards")
    op.drop_table("ecards")

"""Registry: persons, their name changes, cards, card events and status-list shards.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LIVE = "state IN ('pending_personalization', 'active', 'suspended')"
_STATES = "state IN ('pending_personalization', 'active', 'suspended', 'revoked', 'expired')"


def _event_id() -> sa.types.TypeEngine[int]:
    # BIGINT identity on PostgreSQL; SQLite only autoincrements an INTEGER primary key.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("citizen_id", sa.String(18), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("deceased_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("sex IN ('M', 'F')", name="ck_persons_sex"),
        sa.UniqueConstraint("citizen_id", name="uq_persons_citizen_id"),
    )
    op.create_table(
        "person_changes",
        sa.Column("id", _event_id(), primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.Uuid(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("old_value", sa.String(256), nullable=True),
        sa.Column("new_value", sa.String(256), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_person_changes_person_id", "person_changes", ["person_id", "id"])
    op.create_table(
        "status_shards",
        sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("bits", sa.Integer(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 131072", name="ck_status_shards_size"),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("card_number", sa.String(9), nullable=False),
        sa.Column("person_id", sa.Uuid(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=False),
        sa.Column(
            "status_shard", sa.Integer(), sa.ForeignKey("status_shards.shard"), nullable=False
        ),
        sa.Column("status_idx", sa.Integer(), nullable=False),
        sa.Column("suspended_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.Column("replaces_card_id", sa.Uuid(), sa.ForeignKey("cards.id"), nullable=True),
        sa.Column("chip_kid", sa.String(64), nullable=True),
        sa.Column("chip_jwk", sa.Text(), nullable=True),
        sa.Column("document", sa.Text(), nullable=True),
        sa.Column("request_key", sa.String(80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_STATES, name="ck_cards_state"),
        sa.CheckConstraint("status_idx >= 0", name="ck_cards_status_idx"),
        sa.CheckConstraint("expiry_date > issue_date", name="ck_cards_dates"),
        sa.UniqueConstraint("card_number", name="uq_cards_card_number"),
        sa.UniqueConstraint("status_shard", "status_idx", name="uq_cards_status_index"),
        sa.UniqueConstraint("chip_kid", name="uq_cards_chip_kid"),
        sa.UniqueConstraint("request_key", name="uq_cards_request_key"),
    )
    op.create_index("ix_cards_person_id", "cards", ["person_id"])
    # At most one live card per person: the database, not the code, guarantees it.
    op.create_index(
        "uq_cards_one_live_per_person",
        "cards",
        ["person_id"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_index(
        "ix_cards_suspended_until",
        "cards",
        ["suspended_until"],
        sqlite_where=sa.text("suspended_until IS NOT NULL"),
        postgresql_where=sa.text("suspended_until IS NOT NULL"),
    )
    op.create_index(
        "ix_cards_live_expiry",
        "cards",
        ["expiry_date"],
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_table(
        "card_events",
        sa.Column("id", _event_id(), primary_key=True, autoincrement=True),
        sa.Column("card_id", sa.Uuid(), sa.ForeignKey("cards.id"), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_card_events_card_id", "card_events", ["card_id", "id"])


def downgrade() -> None:
    op.drop_table("card_events")
    op.drop_table("cards")
    op.drop_table("status_shards")
    op.drop_table("person_changes")
    op.drop_table("persons")

"""The person on every card event: the distribution key (cardsvc.db.distribution).

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every per-person table carries person_id, so a sharded deployment (Citus) keeps a
    # card's events on the shard of its card and its holder (docs/scaling.md).
    with op.batch_alter_table("card_events") as batch:
        batch.add_column(sa.Column("person_id", sa.Uuid(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # One hash join, not a lookup per row (20 million events take minutes, not hours).
        op.execute(
            "UPDATE card_events e SET person_id = c.person_id FROM cards c WHERE c.id = e.card_id"
        )
    else:
        op.execute(
            "UPDATE card_events SET person_id = "
            "(SELECT cards.person_id FROM cards WHERE cards.id = card_events.card_id)"
        )
    with op.batch_alter_table("card_events") as batch:
        batch.alter_column("person_id", existing_type=sa.Uuid(), nullable=False)
        batch.create_foreign_key("card_events_person_id_fkey", "persons", ["person_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("card_events") as batch:
        batch.drop_constraint("card_events_person_id_fkey", type_="foreignkey")
        batch.drop_column("person_id")

"""The person on every card event (the distribution key, cardsvc.db.distribution), and
covering indexes for loading a status shard.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
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
    # Loading a status shard reads (idx, state) of its cards. A shard's cards are spread
    # over the whole table (random indexes), so through the unique (shard, idx) index the
    # read visits most of the table's pages for each shard; with the state in the index
    # it is an index-only range scan (bench/bench_pg_scale.py, docs/scaling.md).
    op.create_index("ix_cards_status_entries", "cards", ["status_shard", "status_idx", "state"])
    op.create_index(
        "ix_ecards_status_entries", "ecards", ["status_shard", "status_idx", "state", "card_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ecards_status_entries", table_name="ecards")
    op.drop_index("ix_cards_status_entries", table_name="cards")
    with op.batch_alter_table("card_events") as batch:
        batch.drop_constraint("card_events_person_id_fkey", type_="foreignkey")
        batch.drop_column("person_id")

"""Alembic environment: always runs on a connection handed in by cardsvc.db.migrate."""

from __future__ import annotations

from alembic import context

from cardsvc.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `cardsvc db upgrade`")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

"""Migrations and a database round trip, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import current_revision, head_revision, require_current, upgrade
from cardsvc.db.models import ServiceMeta
from cardsvc.errors import ConfigurationError, DatabaseNotMigratedError


def test_empty_database_is_refused_then_upgrade_and_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(DatabaseNotMigratedError, match="cardsvc db upgrade") as info:
            require_current(engine)
        assert info.value.current is None
        upgrade(engine)
        assert require_current(engine) == head_revision()
        upgrade(engine)  # a second upgrade is a no-op
        assert current_revision(engine) == head_revision()

        stamp = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        with Session(engine) as session, session.begin():
            session.add(ServiceMeta(name="installed", value="yes", updated_at=stamp))
        with Session(engine) as session:
            row = session.scalars(select(ServiceMeta)).one()
        assert (row.name, row.value) == ("installed", "yes")
        assert row.updated_at.replace(tzinfo=row.updated_at.tzinfo or UTC) == stamp
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_schemas_isolate_tests(pg_schema: str, postgres_url: str) -> None:
    engine = make_engine(f"{postgres_url}?options=-csearch_path%3D{pg_schema}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            tables = (
                conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %(s)s",
                    {"s": pg_schema},
                )
                .scalars()
                .all()
            )
        assert {"alembic_version", "service_meta"} <= set(tables)
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "oracle://a"])
def test_unsupported_database_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        make_engine(url)

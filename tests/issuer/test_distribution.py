"""The schema stays ready for Citus (docs/scaling.md): every table is declared in
cardsvc.db.distribution, every distributed table carries the person key, and every unique
constraint it has either holds that key or is named with how it stays unique."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Inspector, String, Table, Uuid, column, insert, inspect, table, text
from sqlalchemy.exc import IntegrityError

from cardsvc.db.distribution import DISTRIBUTION, Distributed
from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import upgrade
from cardsvc.db.models import Base, Card, Person, StatusShard, UtcDateTime


def _tables() -> dict[str, Table]:
    return dict(Base.metadata.tables)


def _unique_keys(inspector: Inspector, table: str) -> dict[str, set[str]]:
    """Name -> columns of the table's primary key, unique constraints and unique indexes,
    as the migrations made them (SQLite's unnamed primary key under PostgreSQL's name)."""
    pk = inspector.get_pk_constraint(table)
    keys = {str(pk.get("name") or f"{table}_pkey"): set(pk["constrained_columns"])}
    for unique in inspector.get_unique_constraints(table):
        keys[str(unique["name"])] = {str(c) for c in unique["column_names"]}
    for index in inspector.get_indexes(table):
        if index["unique"]:
            keys[str(index["name"])] = {str(c) for c in index["column_names"] if c}
    return keys


def test_every_table_is_declared_and_nothing_else() -> None:
    assert set(DISTRIBUTION) == set(_tables())


def test_every_distributed_table_carries_the_person_key() -> None:
    persons_id = _tables()["persons"].c.id
    for name, placement in DISTRIBUTION.items():
        if not isinstance(placement, Distributed):
            continue
        table = _tables()[name]
        assert placement.column in table.c, f"{name} has no {placement.column}"
        column = table.c[placement.column]
        assert not column.nullable, f"{name}.{placement.column} may be NULL"
        if name != "persons":
            assert any(fk.column is persons_id for fk in column.foreign_keys), (
                f"{name}.{placement.column} is no foreign key to persons.id"
            )


def test_unique_keys_of_distributed_tables_hold_the_key_or_say_how_they_stay_unique(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        inspector = inspect(engine)
        migrated = set(inspector.get_table_names()) - {"alembic_version"}
        assert migrated == set(DISTRIBUTION)
        for name, placement in DISTRIBUTION.items():
            if not isinstance(placement, Distributed):
                continue
            assert placement.column in {c["name"] for c in inspector.get_columns(name)}
            keys = _unique_keys(inspector, name)
            undeclared = {
                key
                for key, columns in keys.items()
                if placement.column not in columns and key not in placement.global_unique
            }
            assert not undeclared, f"{name}: unique without {placement.column}: {undeclared}"
            stale = set(placement.global_unique) - set(keys)
            assert not stale, f"{name}: declared but no such unique key: {stale}"
    finally:
        engine.dispose()


#: card_events as revision 0011 left it (no person_id).
_EVENTS_0011 = table(
    "card_events",
    column("card_id", Uuid()),
    column("action", String()),
    column("to_state", String()),
    column("reason", String()),
    column("actor", String()),
    column("at", UtcDateTime()),
)
_EVENT = {"action": "issue", "to_state": "pending_personalization", "reason": "r", "actor": "t"}


def test_migration_0013_gives_every_card_event_its_person(database_url: str) -> None:
    """Applies on SQLite and PostgreSQL: events stored before it get their card's holder,
    the column is required afterwards, and the status shards' covering indexes exist."""
    engine = make_engine(database_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    person, card = uuid.uuid4(), uuid.uuid4()
    try:
        upgrade(engine, "0011")
        with engine.begin() as conn:
            conn.execute(
                insert(Person).values(
                    id=person, citizen_id="11010519491231002X", name="x", sex="F",
                    birth_date=date(1949, 12, 31), region_code="110105", created_at=now,
                    created_by="t", updated_at=now,
                )
            )  # fmt: skip
            conn.execute(
                insert(StatusShard).values(shard=0, size=131072, bits=2, closed=False,
                                           created_at=now)
            )  # fmt: skip
            conn.execute(
                insert(Card).values(
                    id=card, card_number="A00000001", person_id=person,
                    state="pending_personalization", issue_date=date(2026, 1, 1),
                    expiry_date=date(2036, 1, 1), status_shard=0, status_idx=7, created_at=now,
                    created_by="t", updated_at=now,
                )
            )  # fmt: skip
            conn.execute(insert(_EVENTS_0011).values(card_id=card, **_EVENT, at=now))
        upgrade(engine)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT card_id, person_id FROM card_events")).one()
        assert [uuid.UUID(str(v)) for v in stored] == [card, person]
        columns = {c["name"]: c for c in inspect(engine).get_columns("card_events")}
        assert columns["person_id"]["nullable"] is False
        covering = {
            "cards": ["status_shard", "status_idx", "state"],
            "ecards": ["status_shard", "status_idx", "state", "card_id"],
        }
        for name, wanted in covering.items():
            found = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes(name)}
            assert found[f"ix_{name}_status_entries"] == wanted
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(_EVENTS_0011).values(card_id=card, **_EVENT, at=now))
    finally:
        engine.dispose()

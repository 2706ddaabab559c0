"""The bench's COPY loader (bench/pg_scale.py) with a tiny count, so it keeps working: the
schema it leaves is the migrated one, its rows parse, and the audit log it writes verifies."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from bench.pg_scale import definitions, load, schema_url
from cardsvc.audit.verify import verify
from cardsvc.core.identity import CardNumber, CitizenId
from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import head_revision, upgrade
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
def migrated(pg_schema: str) -> Iterator[str]:
    """A second schema, only migrated: what the loaded one must look like."""
    engine = make_engine(schema_url(POSTGRES_URL, pg_schema))
    upgrade(engine)
    engine.dispose()
    yield pg_schema


def _definitions(schema: str) -> list[tuple[str, str, str, str]]:
    """The keys, constraints and indexes, their text without the schema name and without
    the casts and parentheses PostgreSQL adds when it prints a partial index's WHERE
    again (``state IN (...)`` comes back as ``state = ANY (ARRAY[...])``, its casts
    placed differently the second time)."""
    with psycopg.connect("host=127.0.0.1 dbname=test user=root") as conn:
        return [(k, t, n, _plain(d.replace(f"{schema}.", ""))) for k, t, n, d in
                definitions(conn, schema)]  # fmt: skip


def _plain(definition: str) -> str:
    for noise in ("::character varying", "::text[]", "::text", "(", ")", " "):
        definition = definition.replace(noise, "")
    return definition


def test_a_small_load_leaves_the_migrated_schema_and_a_verifying_audit_log(
    migrated: str,
) -> None:
    schema = f"scale_{secrets.token_hex(4)}"
    try:
        report = load(POSTGRES_URL, schema, 200, shard_size=131072, chunk=64)
        assert report.rows["persons"] == report.rows["cards"] == 200
        assert report.rows["card_events"] > 200 and report.rows["transactions"] > 0
        assert report.rows["ecards"] > 0 and report.rows["entitlements"] > 0
        assert _definitions(schema) == _definitions(migrated)

        engine = make_engine(schema_url(POSTGRES_URL, schema))
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
            pairs = "SELECT p.citizen_id, c.card_number FROM persons p JOIN cards c"
            for cid, number in conn.execute(text(pairs + " ON c.person_id = p.id")):
                CitizenId.parse(cid)  # the check character, region and date are right
                CardNumber.parse(number)
            states = dict(
                conn.execute(text("SELECT state, count(*) FROM cards GROUP BY state")).all()
            )
            assert states["active"] > 150
            size = conn.scalar(text("SELECT size FROM audit_state"))
            assert size == report.rows["audit_leaves"] == 200 + report.rows["card_events"]
            found = verify(conn, lambda _kid: None)
        engine.dispose()
        assert found.count == 0, found.first
        assert (found.leaves, found.rows) == (size, 400 + report.rows["card_events"])
    finally:
        admin = make_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

"""`audit verify` streams: the same findings at any chunk size, tampering found in the
first, a middle and the last chunk, and memory that does not grow with the log.

The log and tables are bulk-built with the writers' own leaf and row encodings
(:mod:`cardsvc.audit.log`, :mod:`cardsvc.audit.rows`), tens of thousands of rows in a
few seconds, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, insert, select, text, update

from cardsvc.audit.log import SALT_SIZE, commitment, leaf_input
from cardsvc.audit.rows import card_event_row, chip_binding_row, person_change_row, person_row
from cardsvc.audit.verify import Progress, Report, verify
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.merkle import MemoryTree, leaf_hash
from cardsvc.db.models import (
    Card,
    CardEvent,
    Person,
    PersonChange,
    audit_leaves,
    audit_nodes,
    audit_state,
)
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import client, enrol, issue, personalize, services

__all__ = ["client", "services"]

ENTITIES = 5_000  # persons, each with a card and its event; every 3rd chip, every 5th renamed
TINY, LARGE = 37, 100_000


def bulk(connection: Connection, n: int, *, first: int = 0) -> None:
    """``n`` enrolled persons with an issued card each, their rows and their leaves, as the
    writers would have stored them (one leaf per change, commitments and subtree hashes)."""
    now = utcnow()
    shard = connection.scalar(select(Card.status_shard).limit(1))
    event_id = connection.scalar(select(func.max(CardEvent.id))) or 0
    change_id = connection.scalar(select(func.max(PersonChange.id))) or 0
    tree = MemoryTree(
        bytes(h) for h in connection.scalars(select(audit_leaves.c.leaf_hash).order_by("idx"))
    )
    persons, cards, events, changes, leaves = [], [], [], [], []

    def leaf(kind: str, subject: str, data: dict[str, Any], row: dict[str, Any]) -> None:
        salt = uuid.uuid4().bytes[:SALT_SIZE]
        raw = leaf_input(
            kind=kind,
            actor="bulk",
            subject=subject,
            at=now,
            data=data | {"row": commitment(salt, row)},
        )
        digest = leaf_hash(raw)
        leaves.append(
            {
                "idx": tree.append(digest),
                "leaf_hash": digest,
                "kind": kind,
                "subject": subject,
                "at": now,
                "data": raw.decode("ascii"),
                "salt": salt,
            }
        )

    for i in range(first, first + n):
        person = Person(
            id=uuid.uuid4(),
            citizen_id=f"11010519900101{i:04d}"[-18:],
            name="张三",
            sex="M",
            birth_date=date(1990, 1, 1),
            region_code="110105",
            deceased_on=None,
            created_at=now,
            created_by="bulk",
            updated_at=now,
        )
        leaf("person.enrolled", f"person:{person.id}", {}, person_row(person, name="张三"))
        card = Card(
            id=uuid.uuid4(),
            card_number=f"Z{i:08d}",
            person_id=person.id,
            state="pending_personalization",
            issue_date=date(2026, 1, 1),
            expiry_date=date(2036, 1, 1),
            status_shard=shard,
            status_idx=1_000_000 + i,
            replaces_card_id=None,
            created_at=now,
            created_by="bulk",
            updated_at=now,
        )
        event_id += 1
        event = CardEvent(
            id=event_id,
            card_id=card.id,
            person_id=card.person_id,
            action="issue",
            from_state=None,
            to_state=card.state,
            reason="bulk",
            actor="bulk",
            at=now,
        )
        leaf(
            "card.issue",
            f"card:{card.id}",
            {"event": event.id, "from": None, "to": card.state},
            card_event_row(event, card),
        )
        if i % 3 == 0:
            card.chip_kid, card.document = f"chip-{i}", f"document-{i}"
            leaf(
                "card.chip_bound",
                f"card:{card.id}",
                {"chip_kid": card.chip_kid},
                chip_binding_row(card),
            )
        if i % 5 == 0:
            change_id += 1
            change = PersonChange(
                id=change_id,
                person_id=person.id,
                field="name",
                old_value="张三",
                new_value="李四",
                reason="bulk",
                actor="bulk",
                at=now,
            )
            person.name = "李四"
            leaf(
                "person.name",
                f"person:{person.id}",
                {"change": change.id},
                person_change_row(change),
            )
            changes.append(columns(change))
        persons.append(columns(person))
        cards.append(columns(card))
        events.append(columns(event))
    start = tree.size - len(leaves)
    nodes = [
        {"level": level, "idx": i, "hash": tree.node(level, i)}
        for level in range(1, tree.size.bit_length())
        for i in range(start >> level, tree.size >> level)
    ]
    for table, values in (
        (Person.__table__, persons),
        (Card.__table__, cards),
        (CardEvent.__table__, events),
        (PersonChange.__table__, changes),
        (audit_leaves, leaves),
        (audit_nodes, nodes),
    ):
        if values:
            connection.execute(insert(table), values)  # type: ignore[arg-type]
    connection.execute(update(audit_state).values(size=tree.size))


def columns(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


@pytest.fixture
def big(client: TestClient, services: Services) -> Services:
    """A real scenario, a checkpoint, the bulk rows, a checkpoint, more rows."""
    card = issue(client, services, enrol(client, services)["id"])
    personalize(client, services, card["card_number"])
    services.audit.sign_checkpoint(now=utcnow())
    with services.engine.begin() as conn:
        bulk(conn, ENTITIES // 2)
    services.audit.sign_checkpoint(now=utcnow())
    with services.engine.begin() as conn:
        bulk(conn, ENTITIES - ENTITIES // 2, first=ENTITIES // 2)
    return services


def keys(services: Services) -> Callable[[str], VerifyingKey | None]:
    return {r.kid: r.key for r in services.keys.records()}.get


def same(a: Report, b: Report) -> None:
    assert (a.leaves, a.checkpoints, a.rows, a.count) == (b.leaves, b.checkpoints, b.rows, b.count)
    assert a.first == b.first and str(a.first) == str(b.first)
    assert sorted(a.divergences) == sorted(b.divergences)
    assert sorted(map(str, a.divergences)) == sorted(map(str, b.divergences))


def test_a_clean_log_verifies_identically_at_any_chunk_size(big: Services) -> None:
    seen: list[Progress] = []
    with big.engine.connect() as conn:
        small = verify(conn, keys(big), chunk=TINY, progress=seen.append, progress_every=5_000)
        large = verify(conn, keys(big), chunk=LARGE)
        leaves = conn.scalar(select(func.count()).select_from(audit_leaves))
    assert small.first is None, small.divergences[:5]
    same(small, large)
    assert small.leaves == leaves and small.checkpoints == 2
    assert small.rows == 3 * ENTITIES + ENTITIES // 5 + 4  # + the scenario: person, card, 2 events
    assert small.rows // TINY > 400  # hundreds of chunks
    phases = [p.phase for p in seen]
    assert phases[0] == "leaves" and phases[-1] == "persons"
    assert [p.checked for p in seen] == sorted(p.checked for p in seen)
    assert len(seen) == (small.leaves + small.rows) // 5_000


def _targets(conn: Connection) -> dict[str, dict[str, Any]]:
    """Rows and leaves in the first, a middle and the last chunk of their scan order."""

    def pick(column: Any, where: Any = None) -> dict[str, Any]:
        query = select(column).order_by(column)
        if where is not None:
            query = query.where(where)
        values = list(conn.scalars(query))
        return {"first": values[0], "middle": values[len(values) // 2], "last": values[-1]}

    return {
        "event": pick(CardEvent.id),
        "card": pick(Card.id),
        "person": pick(Person.id),
        "change": pick(PersonChange.id),
        "leaf": pick(  # not the very last leaf: removing it leaves no gap, only a short tree
            audit_leaves.c.idx,
            (audit_leaves.c.kind == "card.issue")
            & (audit_leaves.c.idx < select(func.max(audit_leaves.c.idx)).scalar_subquery()),
        ),
        "chip": pick(Card.id, Card.chip_kid.is_not(None)),
    }


def _uuid(conn: Connection, value: uuid.UUID) -> Any:
    return value.hex if conn.dialect.name == "sqlite" else value


TAMPER: dict[str, tuple[Callable[[Connection, Any], None], str, str]] = {
    # name: (tamper, which target, what the first finding says: {} is the target)
    "change a card event": (
        lambda c, v: c.execute(
            text("UPDATE card_events SET reason = 'nothing' WHERE id = :v"), {"v": v}
        ),
        "event",
        "card_events row {}: differs from what audit leaf",
    ),
    "delete a person change": (
        lambda c, v: c.execute(text("DELETE FROM person_changes WHERE id = :v"), {"v": v}),
        "change",
        "records person_changes row {}, which is gone",
    ),
    "change a card's state": (
        lambda c, v: c.execute(
            text("UPDATE cards SET state = 'revoked' WHERE id = :v"), {"v": _uuid(c, v)}
        ),
        "card",
        "cards row {} (",
    ),
    "swap a chip key": (
        lambda c, v: c.execute(
            text("UPDATE cards SET chip_kid = chip_kid || '-x' WHERE id = :v"), {"v": _uuid(c, v)}
        ),
        "chip",
        "cards row {} (",
    ),
    "change a birth date": (
        lambda c, v: c.execute(
            text("UPDATE persons SET birth_date = '1991-01-01' WHERE id = :v"),
            {"v": _uuid(c, v)},
        ),
        "person",
        "persons row {}: differs from what audit leaf",
    ),
    "edit leaf data": (
        lambda c, v: c.execute(
            text(
                "UPDATE audit_leaves SET data = replace(data, 'card.issue', 'card.issuf') "
                "WHERE idx = :v"
            ),
            {"v": v},
        ),
        "leaf",
        "leaf {}: stored hash does not match its data",
    ),
    "delete a leaf": (
        lambda c, v: c.execute(text("DELETE FROM audit_leaves WHERE idx = :v"), {"v": v}),
        "leaf",
        "leaf {}: missing",
    ),
}


def test_tampering_is_found_in_any_chunk_with_the_same_reason(big: Services) -> None:
    with big.engine.connect() as conn:
        targets = _targets(conn)
        conn.rollback()
        for case, (tamper, what, expected) in TAMPER.items():
            # All three places at once; one at a time where the first would stop the scan.
            batches = (
                [[v] for v in targets[what].values()]
                if case == "delete a leaf"
                else [list(targets[what].values())]
            )
            for values in batches:
                trans = conn.begin()
                try:
                    for value in values:
                        tamper(conn, value)
                    small = verify(conn, keys(big), chunk=TINY)
                    large = verify(conn, keys(big), chunk=LARGE)
                finally:
                    trans.rollback()
                same(small, large)
                assert small.first is not None, case
                # The finding that names the place; the first finding may be an earlier
                # consequence (a subtree hash above a changed leaf, a person's enrolment
                # leaf when their name change is deleted).
                found = [str(d) for d in small.divergences]
                for value in values:
                    finding = expected.format(value)
                    assert any(finding in f for f in found), (case, finding, found[:5])


def _peak(services: Services, chunk: int) -> int:
    with services.engine.connect() as conn:
        gc.collect()
        tracemalloc.start()
        try:
            report = verify(conn, keys(services), chunk=chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert report.first is None, report.divergences[:5]
    return peak


def test_memory_does_not_grow_with_the_log(client: TestClient, services: Services) -> None:
    """Peak Python memory is set by the chunk size, not by the number of rows."""
    issue(client, services, enrol(client, services)["id"])
    with services.engine.begin() as conn:
        bulk(conn, 1_000)
    _peak(services, 32)  # warm caches (compiled statements, type processors)
    before = _peak(services, 32)
    with services.engine.begin() as conn:
        bulk(conn, 3_000, first=1_000)  # four times the rows and leaves
    after = _peak(services, 32)
    assert after < before * 1.25 + 128 * 1024, (before, after)
    # The same rows with a large chunk: memory follows the chunk.
    assert _peak(services, 4_096) > 2 * after, (after,)


def test_cli_reports_progress_on_stderr_and_keeps_its_output(
    client: TestClient, services: Services
) -> None:
    from typer.testing import CliRunner

    from cardsvc.cli.main import app

    card = issue(client, services, enrol(client, services)["id"])
    personalize(client, services, card["card_number"])
    settings = services.settings
    env = {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": "test passphrase",
        "CARDSVC_ISSUER": settings.issuer,
    }
    args = ["audit", "verify", "--chunk", "2", "--progress-every", "3"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("audit log OK: "), result.stdout
    progress = result.stderr.splitlines()
    assert progress and all(line.startswith("audit verify: ") for line in progress)
    assert "leaves" in progress[0] and "persons" in progress[-1]
    quiet = CliRunner().invoke(app, ["audit", "verify", "--progress-every", "0"], env=env)
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == result.stdout

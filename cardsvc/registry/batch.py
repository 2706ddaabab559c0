"""Batch issuance: enrol and issue many persons from CSV rows, idempotently.

Each chunk of rows is validated in Python, then written with a handful of bulk Core
statements (no per-row ORM objects) in one transaction: persons, cards and their events.
Cards are created *pending personalization*: a card document binds the chip's own key,
which only exists once the chip is in a personalization terminal, so documents are signed
then (``POST /v1/cards/{n}/personalization``), not here.

Idempotency: every card carries a request key derived from its row (citizen ID number and
name), unique in the database. Rerunning a file finds the persons and request keys already
there and creates nothing; ``INSERT ... ON CONFLICT DO NOTHING`` keeps a concurrent run of
the same file from creating anything twice either.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any, TextIO

from sqlalchemy import ARRAY, Connection, Engine, Insert, any_, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.audit.log import append_many
from cardsvc.audit.rows import card_event_row, person_row
from cardsvc.core.errors import CoreError
from cardsvc.core.identity import CitizenId, RegionCode, Sex
from cardsvc.db.models import LIVE_STATES, Card, CardEvent, Person
from cardsvc.errors import Invalid
from cardsvc.registry.cards import add_years, china_date, new_card_number
from cardsvc.registry.errors import RegistryError
from cardsvc.registry.lifecycle import Action, CardState
from cardsvc.registry.persons import check_name
from cardsvc.registry.status import StatusLists

COLUMNS = ("citizen_id", "name", "sex", "birth_date", "region_code")
REQUIRED = ("citizen_id", "name")
CHUNK = 5_000
_RETRIES = 5


class BatchFileError(Invalid, RegistryError):
    """The file as a whole is unusable (no header, unknown columns)."""

    code = "batch-file"


@dataclass(frozen=True, kw_only=True)
class Rejected:
    row: int  # 1-based line number in the file (the header is line 1)
    citizen_id: str
    reason: str


@dataclass(kw_only=True)
class BatchReport:
    rows: int = 0
    persons_enrolled: int = 0
    persons_existing: int = 0
    cards_issued: int = 0
    cards_existing: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Row:
    line: int
    citizen_id: str
    name: str
    sex: str
    birth_date: date
    region_code: str
    request_key: str


def read_rows(stream: TextIO) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` from a CSV file with a header naming :data:`COLUMNS`."""
    reader = csv.DictReader(stream)
    header = reader.fieldnames
    if not header:
        raise BatchFileError("the file is empty: expected a header line citizen_id,name,...")
    names = [h.strip() for h in header]
    unknown = sorted(set(names) - set(COLUMNS))
    missing = [c for c in REQUIRED if c not in names]
    if unknown or missing:
        raise BatchFileError(
            f"header must name {', '.join(REQUIRED)} (optional: sex, birth_date, region_code); "
            f"unknown: {unknown or 'none'}, missing: {missing or 'none'}"
        )
    reader.fieldnames = names
    for row in reader:
        yield reader.line_num, row


def _validate(line: int, raw: dict[str, Any], today: date) -> _Row:
    if None in raw:
        raise ValueError("more fields than the header names")
    cid = CitizenId.parse(raw.get("citizen_id") or "", today=today)
    name = check_name(raw.get("name") or "")
    sex = (raw.get("sex") or "").strip()
    if sex and Sex(sex) is not cid.sex:
        raise ValueError(f"sex {sex} does not match the citizen ID number")
    birth = (raw.get("birth_date") or "").strip()
    if birth and date.fromisoformat(birth) != cid.birth_date:
        raise ValueError(f"birth date {birth} does not match the citizen ID number")
    region = (raw.get("region_code") or "").strip()
    region_code = str(RegionCode.parse(region)) if region else str(cid.region_code)
    key = hashlib.sha256(f"{cid}\x1f{name}".encode()).hexdigest()[:48]
    return _Row(
        line=line,
        citizen_id=str(cid),
        name=name,
        sex=cid.sex.value,
        birth_date=cid.birth_date,
        region_code=region_code,
        request_key="batch:" + key,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, CoreError | RegistryError):
        return exc.detail
    return str(exc) or type(exc).__name__


def _insert(conn: Connection, model: type[Any]) -> Insert:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt: Insert = dialect.insert(model).on_conflict_do_nothing()
    return stmt


def _in(conn: Connection, column: Any, values: list[Any]) -> Any:
    """``column IN (...)``; on PostgreSQL ``= ANY(array)``: one parameter, not thousands
    (psycopg parses a query text per statement, so long IN lists cost more than the work)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def _insert_all(conn: Connection, model: Any, rows: list[dict[str, Any]]) -> set[Any]:
    """Insert ``rows`` skipping conflicts; return the ids actually inserted.

    A plain ``executemany`` (pipelined on psycopg) with the summed rowcount: when every
    row went in, no RETURNING or read-back is needed; otherwise the ids are read back.
    """
    if not rows:
        return set()
    result = conn.execute(_insert(conn, model), rows)
    ids = [r["id"] for r in rows]
    if result.rowcount == len(rows):
        return set(ids)
    return set(conn.scalars(select(model.id).where(_in(conn, model.id, ids))))


def _audit_events(
    persons: list[dict[str, Any]],
    cards: list[dict[str, Any]],
    inserted: set[Any],
    events: list[dict[str, Any]],
    event_ids: Sequence[int],
) -> list[AuditEvent]:
    """The leaves of one chunk, as the single-row writers record them: each person
    enrolled, then each card's issue event (the rows are plain dicts: no ORM objects)."""
    out = [
        AuditEvent(
            kind=AuditKind.PERSON_ENROLLED,
            subject=f"person:{p['id']}",
            commit=person_row(SimpleNamespace(**p), name=p["name"]),  # type: ignore[arg-type]
        )
        for p in persons
    ]
    by_id = {c["id"]: c for c in cards if c["id"] in inserted}
    for values, event_id in zip(events, event_ids, strict=True):
        card = SimpleNamespace(replaces_card_id=None, **by_id[values["card_id"]])
        event = SimpleNamespace(id=event_id, **values)
        out.append(
            AuditEvent(
                kind=AuditKind.CARD_ISSUE,
                subject=f"card:{card.id}",
                data={"event": event_id, "from": None, "to": values["to_state"]},
                commit=card_event_row(event, card),  # type: ignore[arg-type]
            )
        )
    return out


class BatchIssuer:
    """Enrol and issue from rows; ``progress`` is called with the rows done per chunk."""

    def __init__(self, engine: Engine, status: StatusLists, *, validity_years: int) -> None:
        self._engine = engine
        self._status = status
        self._validity_years = validity_years

    def run(
        self,
        rows: Iterable[tuple[int, dict[str, str]]],
        *,
        actor: Actor,
        now: datetime,
        progress: Callable[[int], None] | None = None,
        chunk_size: int = CHUNK,
    ) -> BatchReport:
        report = BatchReport()
        seen: dict[str, int] = {}
        chunk: list[_Row] = []
        today = china_date(now)
        for line, raw in rows:
            report.rows += 1
            try:
                row = _validate(line, raw, today)
            except (CoreError, RegistryError, ValueError) as exc:
                cid = str(raw.get("citizen_id") or "")[:32]
                report.rejected.append(Rejected(row=line, citizen_id=cid, reason=_reason(exc)))
                continue
            first = seen.setdefault(row.citizen_id, line)
            if first != line:
                report.rejected.append(
                    Rejected(
                        row=line,
                        citizen_id=row.citizen_id,
                        reason=f"same citizen ID number as row {first}",
                    )
                )
                continue
            chunk.append(row)
            if len(chunk) >= chunk_size:
                self._chunk(chunk, report, actor=actor, now=now)
                if progress:
                    progress(len(chunk))
                chunk = []
        if chunk:
            self._chunk(chunk, report, actor=actor, now=now)
            if progress:
                progress(len(chunk))
        return report

    def _chunk(self, rows: list[_Row], report: BatchReport, *, actor: Actor, now: datetime) -> None:
        # Read phase: what the database already holds for these rows.
        cids = [r.citizen_id for r in rows]
        keys = [r.request_key for r in rows]
        with self._engine.connect() as conn:
            existing = {
                cid: (pid, name, deceased)
                for pid, cid, name, deceased in conn.execute(
                    select(Person.id, Person.citizen_id, Person.name, Person.deceased_on).where(
                        _in(conn, Person.citizen_id, cids)
                    )
                )
            }
            done_keys = set(
                conn.scalars(select(Card.request_key).where(_in(conn, Card.request_key, keys)))
            )
            live = set(
                conn.scalars(
                    select(Card.person_id).where(
                        _in(conn, Card.person_id, [p[0] for p in existing.values()]),
                        Card.state.in_(LIVE_STATES),
                    )
                )
            )
        new_persons: list[dict[str, Any]] = []
        to_issue: list[tuple[_Row, uuid.UUID]] = []
        for row in rows:
            if row.request_key in done_keys:
                report.persons_existing += 1
                report.cards_existing += 1
                continue
            found = existing.get(row.citizen_id)
            if found is None:
                pid = uuid.uuid4()
                new_persons.append(
                    {
                        "id": pid,
                        "citizen_id": row.citizen_id,
                        "name": row.name,
                        "sex": row.sex,
                        "birth_date": row.birth_date,
                        "region_code": row.region_code,
                        "deceased_on": None,
                        "created_at": now,
                        "created_by": actor,
                        "updated_at": now,
                    }
                )
                to_issue.append((row, pid))
                continue
            pid, name, deceased = found
            report.persons_existing += 1
            reason = None
            if deceased is not None:
                reason = "the person's death is recorded: no new cards"
            elif name != row.name:
                reason = f"already enrolled under a different name ({name}): correct it first"
            elif pid in live:
                reason = "the person already has a live card"
            if reason:
                report.rejected.append(
                    Rejected(row=row.line, citizen_id=row.citizen_id, reason=reason)
                )
            else:
                to_issue.append((row, pid))
        if not to_issue:
            return
        issue_date = china_date(now)
        expiry = add_years(issue_date, self._validity_years)
        pending = CardState.PENDING_PERSONALIZATION.value
        remaining = to_issue
        persons_left = new_persons
        for _ in range(_RETRIES):
            slots = self._status.allocate_many(len(remaining), now=now)
            cards = [
                {
                    "id": uuid.uuid4(),
                    "card_number": new_card_number(),
                    "person_id": pid,
                    "state": pending,
                    "issue_date": issue_date,
                    "expiry_date": expiry,
                    "status_shard": shard,
                    "status_idx": idx,
                    "request_key": row.request_key,
                    "created_at": now,
                    "created_by": actor,
                    "updated_at": now,
                }
                for (row, pid), (shard, idx) in zip(remaining, slots, strict=True)
            ]
            with self._engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                persons_written: list[dict[str, Any]] = []
                if persons_left:
                    enrolled = _insert_all(conn, Person, persons_left)
                    persons_written = [p for p in persons_left if p["id"] in enrolled]
                    report.persons_enrolled += len(enrolled)
                    persons_left = []
                inserted = _insert_all(conn, Card, cards)
                events = [
                    {
                        "card_id": c["id"],
                        "person_id": c["person_id"],
                        "action": Action.ISSUE.value,
                        "from_state": None,
                        "to_state": pending,
                        "reason": "batch issuance",
                        "actor": actor,
                        "at": now,
                    }
                    for c in cards
                    if c["id"] in inserted
                ]
                event_ids = (
                    conn.execute(
                        insert(CardEvent).returning(CardEvent.id, sort_by_parameter_order=True),
                        events,
                    )
                    .scalars()
                    .all()
                    if events
                    else []
                )
                # Rows not inserted: another run took the request key or gave the person
                # a live card (nothing to do), or a card number collided (retry those).
                missed = [c for c in cards if c["id"] not in inserted]
                taken_keys = set()
                live_now = set()
                if missed:
                    taken_keys = set(
                        conn.scalars(
                            select(Card.request_key).where(
                                _in(conn, Card.request_key, [c["request_key"] for c in missed])
                            )
                        )
                    )
                    live_now = set(
                        conn.scalars(
                            select(Card.person_id).where(
                                _in(conn, Card.person_id, [c["person_id"] for c in missed]),
                                Card.state.in_(LIVE_STATES),
                            )
                        )
                    )
                # Last, as every writer does: the leaves take the audit log's lock.
                append_many(
                    conn,
                    _audit_events(persons_written, cards, inserted, events, event_ids),
                    actor=actor,
                    now=now,
                )
                conn.commit()
            report.cards_issued += len(inserted)
            report.cards_existing += sum(
                1 for c in missed if c["request_key"] in taken_keys or c["person_id"] in live_now
            )
            retry_ids = {
                c["id"]
                for c in missed
                if c["request_key"] not in taken_keys and c["person_id"] not in live_now
            }
            remaining = [
                item for item, c in zip(remaining, cards, strict=True) if c["id"] in retry_ids
            ]
            if not remaining:
                return
        for row, _pid in remaining:
            report.rejected.append(
                Rejected(row=row.line, citizen_id=row.citizen_id, reason="could not allocate")
            )

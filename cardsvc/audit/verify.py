"""Recompute the audit log from the database and find where it diverges.

Checks, in log order: every leaf is present (no gaps), its stored hash is the hash of its
data, the stored subtree hashes are the ones recomputed from the leaves, the tree size
row agrees, every stored checkpoint verifies (signature, size, root) against the
recomputed tree; then every audited business row against the leaf that recorded it, and
every leaf that names a row against that row.

Everything streams in keyset-paginated chunks of ``chunk`` rows (``WHERE key > :last
ORDER BY key LIMIT :chunk``), so memory is O(chunk + log n) whatever the size of the log
and the tables, plus the findings themselves:

- **the log** is read once in leaf order; the root is recomputed with a frontier of at
  most log2(n) complete-subtree hashes (as RFC 9162 verifiers do), and the subtree hashes
  it completes are compared with ``audit_nodes`` a chunk at a time. Checkpoints stream in
  ``(size, id)`` order alongside and are checked when the frontier reaches their size.
  For each chunk of leaves that name a business row, the rows are looked up by primary
  key in one query: a leaf naming a row that no longer exists is reported ("which is
  gone"), and so is a leaf that names a row under a subject other than the row's own
  (kept aside, so the row below is compared with it).
- **each business table** is then read in primary-key order. For every chunk, the leaves
  that recorded its rows are fetched through ``ix_audit_leaves_subject`` (a row's leaf
  has the row's subject: ``person:<id>``, ``card:<id>``), the latest one per row is
  compared with the row's commitment, and the card states and person histories the rows
  must agree with are read for that chunk only.

A leaf records a row by its subject (persons, chip bindings) or by an id in its data
(card events, person changes); when several leaves name the same row, the latest counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select
from sqlalchemy.orm import Session

from cardsvc.audit.log import commitment
from cardsvc.audit.rows import card_event_row, chip_binding_row, person_change_row, person_row
from cardsvc.audit.service import CHUNK
from cardsvc.core.checkpoint import decode_checkpoint
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.merkle import EMPTY_ROOT, leaf_hash, node_hash
from cardsvc.db.models import (
    Card,
    CardEvent,
    Person,
    PersonChange,
    audit_checkpoints,
    audit_leaves,
    audit_nodes,
    audit_state,
)

_LAST = 2**63

#: Findings kept in :attr:`Report.divergences` (all are counted; the first is always kept).
MAX_KEPT = 10_000

#: Default for ``progress_every``: one progress report per this many rows and leaves.
PROGRESS_EVERY = 1_000_000

_LABELS = {
    "card_event": "card_events row",
    "chip": "chip binding of",
    "person": "persons row",
    "person_change": "person_changes row",
}


@dataclass(frozen=True, order=True)
class Divergence:
    """One place where the database and the log disagree (``position``: log order)."""

    position: int
    place: str = field(compare=False)
    detail: str = field(compare=False)

    def __str__(self) -> str:
        return f"{self.place}: {self.detail}"


@dataclass
class Report:
    """What :func:`verify` checked and found.

    ``divergences`` keeps the first :data:`MAX_KEPT` findings in the order they were
    found; ``count`` counts them all and ``first`` is the earliest in log order.
    """

    leaves: int = 0
    checkpoints: int = 0
    rows: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    count: int = 0
    first: Divergence | None = None

    def add(self, divergence: Divergence) -> None:
        self.count += 1
        if self.first is None or divergence < self.first:
            self.first = divergence
        if len(self.divergences) < MAX_KEPT:
            self.divergences.append(divergence)


@dataclass(frozen=True, kw_only=True)
class Progress:
    """A progress report: ``done`` of ``total`` (when known) in ``phase`` (``leaves`` or
    a table name), ``checked`` leaves and rows in all phases so far."""

    phase: str
    done: int
    total: int | None
    checked: int


class _Ticker:
    def __init__(self, callback: Callable[[Progress], None] | None, every: int) -> None:
        self._callback = callback if every > 0 else None
        self._every = max(every, 1)
        self._checked = 0

    def __call__(self, phase: str, done: int, total: int | None, n: int) -> None:
        before, self._checked = self._checked, self._checked + n
        if self._callback is not None and before // self._every != self._checked // self._every:
            self._callback(Progress(phase=phase, done=done, total=total, checked=self._checked))


@dataclass
class _Leaf:
    idx: int
    subject: str
    data: dict[str, Any]
    salt: bytes


def _parse(row: Any) -> tuple[str, dict[str, Any], str | None]:
    """``(kind, data, error)`` of a stored leaf; ``data`` is empty when it is malformed."""
    try:
        parsed = json.loads(row.data)
        kind, data = parsed["kind"], parsed["data"]
        if kind != row.kind or parsed["subject"] != row.subject:
            raise ValueError("columns differ from the leaf data")
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        return row.kind, {}, str(exc)
    return kind, data, None


def _row_key(kind: str, subject: str, data: dict[str, Any]) -> tuple[str, str] | None:
    if kind == "card.chip_bound":
        return "chip", subject
    if kind.startswith("card.") and "event" in data:
        return "card_event", str(data["event"])
    if kind == "person.enrolled":
        return "person", subject
    if kind.startswith("person.") and "change" in data:
        return "person_change", str(data["change"])
    return None


def _int_key(key: str) -> int | None:
    """The integer id a key names, when the key is exactly ``str(id)``."""
    try:
        value = int(key)
    except ValueError:
        return None
    return value if str(value) == key else None


def _uuid_key(key: str, prefix: str) -> UUID | None:
    """The UUID in ``prefix:<uuid>``, when the key is exactly ``f"{prefix}:{uuid}"``."""
    if not key.startswith(prefix + ":"):
        return None
    try:
        value = UUID(key[len(prefix) + 1 :])
    except ValueError:
        return None
    return value if f"{prefix}:{value}" == key else None


def _keyset(session: Session, entity: Any, key: Any, chunk: int) -> Iterator[Sequence[Any]]:
    """ORM rows of ``entity`` in ``key`` order, ``chunk`` at a time (identity map cleared)."""
    last = None
    while True:
        query = select(entity).order_by(key).limit(chunk)
        if last is not None:
            query = query.where(key > last)
        rows = session.scalars(query).all()
        if rows:
            yield rows
        session.expunge_all()
        if len(rows) < chunk:
            return
        last = getattr(rows[-1], key.key)


def _leaf_chunks(connection: Connection, chunk: int) -> Iterator[Sequence[Any]]:
    last = -1
    while True:
        rows = connection.execute(
            select(audit_leaves)
            .where(audit_leaves.c.idx > last)
            .order_by(audit_leaves.c.idx)
            .limit(chunk)
        ).all()
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        last = rows[-1].idx


def _checkpoint_rows(connection: Connection, chunk: int) -> Iterator[Any]:
    size, id_ = audit_checkpoints.c.size, audit_checkpoints.c.id
    last: tuple[int, int] | None = None
    while True:
        query = select(audit_checkpoints).order_by(size, id_).limit(chunk)
        if last is not None:
            query = query.where(or_(size > last[0], and_(size == last[0], id_ > last[1])))
        rows = connection.execute(query).all()
        yield from rows
        if len(rows) < chunk:
            return
        last = (rows[-1].size, rows[-1].id)


def verify(
    connection: Connection,
    key_for: Callable[[str], VerifyingKey | None],
    *,
    chunk: int = CHUNK,
    progress: Callable[[Progress], None] | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> Report:
    """Check everything; ``key_for(kid)`` gives checkpoint keys (``None``: unknown).

    Reads ``chunk`` rows per query and holds O(chunk + log n) of them; calls ``progress``
    about once every ``progress_every`` leaves and rows (0: never). The findings do not
    depend on ``chunk``.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    report = Report()
    tick = _Ticker(progress, progress_every)
    keyed = _KeyedLeaves()
    _check_log(connection, key_for, report, keyed, chunk, tick)
    with Session(bind=connection) as session:
        rows = _Rows(session, report, keyed, chunk, tick)
        rows.card_events()
        rows.cards()
        rows.person_changes()
        rows.persons()
    for (kind, key), idx in sorted(keyed.gone.items(), key=lambda item: item[1]):
        report.add(Divergence(idx, f"leaf {idx}", f"records {_LABELS[kind]} {key}, which is gone"))
    return report


@dataclass
class _KeyedLeaves:
    """What the log pass leaves for the row pass (both only ever hold findings)."""

    #: ``(kind, key) -> index`` of the latest leaf naming a row that does not exist.
    gone: dict[tuple[str, str], int] = field(default_factory=dict)
    #: ``(kind, key) -> leaf``: the latest leaf naming an existing row under another subject.
    foreign: dict[tuple[str, str], _Leaf] = field(default_factory=dict)


def _check_log(
    connection: Connection,
    key_for: Callable[[str], VerifyingKey | None],
    report: Report,
    keyed: _KeyedLeaves,
    chunk: int,
    tick: _Ticker,
) -> None:
    add = report.add
    total = connection.scalar(select(audit_state.c.size).where(audit_state.c.id == 1))
    checkpoints = _checkpoint_rows(connection, chunk)
    pending = next(checkpoints, None)
    stack: list[tuple[int, bytes]] = []  # frontier of recomputed complete subtrees
    completed: list[tuple[int, int, bytes]] = []  # (level, index, hash) to compare
    expected = 0

    def root() -> bytes:
        if not stack:
            return EMPTY_ROOT
        h = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            h = node_hash(left, h)
        return h

    def check_nodes() -> None:
        if not completed:
            return
        for level in sorted({c[0] for c in completed}):
            mine = {i: h for lv, i, h in completed if lv == level}
            stored = dict(
                connection.execute(
                    select(audit_nodes.c.idx, audit_nodes.c.hash).where(
                        audit_nodes.c.level == level, audit_nodes.c.idx.in_(list(mine))
                    )
                ).all()
            )
            for i, h in sorted(mine.items()):
                first_leaf = i << level
                place = f"leaves [{first_leaf}, {(i + 1) << level})"
                if i not in stored:
                    add(Divergence(first_leaf, place, f"audit_nodes ({level}, {i}) missing"))
                elif bytes(stored[i]) != h:
                    add(
                        Divergence(
                            first_leaf,
                            place,
                            f"audit_nodes ({level}, {i}) differs from the hash recomputed "
                            "from these leaves (a leaf was changed, moved or replaced)",
                        )
                    )
        completed.clear()

    def check_checkpoints() -> None:
        nonlocal pending
        while pending is not None and pending.size <= expected:
            report.checkpoints += 1
            if pending.size == expected:
                _check_checkpoint(pending, root(), key_for, add)
            pending = next(checkpoints, None)

    stopped = False
    for rows in _leaf_chunks(connection, chunk):
        named: list[tuple[str, str, _Leaf]] = []
        for row in rows:
            if row.idx != expected:
                if row.idx > expected:
                    add(
                        Divergence(
                            expected, f"leaf {expected}", f"missing (next leaf is {row.idx})"
                        )
                    )
                else:
                    add(Divergence(row.idx, f"leaf {row.idx}", "out of order"))
                stopped = True
                break
            digest = leaf_hash(row.data.encode("ascii"))
            if digest != bytes(row.leaf_hash):
                add(Divergence(row.idx, f"leaf {row.idx}", "stored hash does not match its data"))
            kind, data, error = _parse(row)
            if error is not None:
                add(Divergence(row.idx, f"leaf {row.idx}", f"malformed leaf data: {error}"))
            key = _row_key(kind, row.subject, data)
            if key is not None:
                leaf = _Leaf(idx=row.idx, subject=row.subject, data=data, salt=bytes(row.salt))
                named.append((key[0], key[1], leaf))
            level, h = 0, digest
            index = row.idx
            while stack and stack[-1][0] == level:
                h = node_hash(stack.pop()[1], h)
                level += 1
                index >>= 1
                completed.append((level, index, h))
            stack.append((level, h))
            expected += 1
            if len(completed) >= chunk:
                check_nodes()
            check_checkpoints()
        _resolve_named(connection, named, keyed)
        tick("leaves", expected, total, len(rows))
        if stopped:
            break
    check_nodes()
    check_checkpoints()
    report.leaves = expected
    while pending is not None:
        report.checkpoints += 1
        add(
            Divergence(
                min(pending.size - 1, expected),
                f"audit_checkpoints row {pending.id}",
                f"signed size {pending.size} but only {expected} leaves are stored",
            )
        )
        pending = next(checkpoints, None)
    if total != expected:
        add(
            Divergence(
                min(expected, total or 0),
                "audit_state",
                f"tree size {total} but {expected} consecutive leaves are stored",
            )
        )
    node_count = connection.scalar(select(func.count()).select_from(audit_nodes)) or 0
    want = sum(expected >> level for level in range(1, max(expected.bit_length(), 1)))
    if node_count != want:
        add(Divergence(_LAST, "audit_nodes", f"{node_count} rows, expected {want} for the tree"))


def _resolve_named(
    connection: Connection, named: Iterable[tuple[str, str, _Leaf]], keyed: _KeyedLeaves
) -> None:
    """Look up, by primary key and in one query per table, the rows a chunk of leaves
    names: note the leaves whose row is gone, and those naming a row under another subject.
    """
    by_kind: dict[str, list[tuple[str, _Leaf]]] = {}
    for kind, key, leaf in named:
        by_kind.setdefault(kind, []).append((key, leaf))
    subjects: dict[str, dict[str, str]] = {}  # kind -> key -> the subject the row has
    events = {k: i for k, _ in by_kind.get("card_event", []) if (i := _int_key(k)) is not None}
    if events:
        found = connection.execute(
            select(CardEvent.id, CardEvent.card_id)
            .join(Card, Card.id == CardEvent.card_id)
            .where(CardEvent.id.in_(set(events.values())))
        ).all()
        subjects["card_event"] = {str(i): f"card:{card}" for i, card in found}
    changes = {k: i for k, _ in by_kind.get("person_change", []) if (i := _int_key(k)) is not None}
    if changes:
        found = connection.execute(
            select(PersonChange.id, PersonChange.person_id).where(
                PersonChange.id.in_(set(changes.values()))
            )
        ).all()
        subjects["person_change"] = {str(i): f"person:{person}" for i, person in found}
    chips = {u for k, _ in by_kind.get("chip", []) if (u := _uuid_key(k, "card")) is not None}
    if chips:
        found_ids = connection.scalars(
            select(Card.id).where(
                Card.id.in_(chips), or_(Card.chip_kid.is_not(None), Card.document.is_not(None))
            )
        ).all()
        subjects["chip"] = {f"card:{i}": f"card:{i}" for i in found_ids}
    persons = {u for k, _ in by_kind.get("person", []) if (u := _uuid_key(k, "person")) is not None}
    if persons:
        found_ids = connection.scalars(select(Person.id).where(Person.id.in_(persons))).all()
        subjects["person"] = {f"person:{i}": f"person:{i}" for i in found_ids}
    for kind, leaves in by_kind.items():
        existing = subjects.get(kind, {})
        for key, leaf in leaves:
            subject = existing.get(key)
            if subject is None:
                keyed.gone[(kind, key)] = leaf.idx
            elif subject != leaf.subject:
                keyed.foreign[(kind, key)] = leaf


class _Rows:
    """The business tables, each in primary-key order, against the leaves of each chunk."""

    def __init__(
        self, session: Session, report: Report, keyed: _KeyedLeaves, chunk: int, tick: _Ticker
    ) -> None:
        self._session = session
        self._report = report
        self._keyed = keyed
        self._chunk = chunk
        self._tick = tick
        self._leaves = report.leaves  # only the consecutive leaves the log pass checked

    def _latest(
        self, kind: str, subjects: Iterable[str], kinds: ColumnElement[bool]
    ) -> dict[str, _Leaf]:
        """``key -> latest leaf`` of ``kind`` among the leaves of ``subjects`` (``kinds``
        narrows the query; the key decides)."""
        subjects = set(subjects)
        if not subjects:
            return {}
        latest: dict[str, _Leaf] = {}
        rows = self._session.connection().execute(
            select(
                audit_leaves.c.idx,
                audit_leaves.c.kind,
                audit_leaves.c.subject,
                audit_leaves.c.data,
                audit_leaves.c.salt,
            )
            .where(
                audit_leaves.c.subject.in_(subjects),
                audit_leaves.c.idx < self._leaves,
                kinds,
            )
            .order_by(audit_leaves.c.idx)
        )
        for row in rows:
            leaf_kind, data, _ = _parse(row)
            key = _row_key(leaf_kind, row.subject, data)
            if key is not None and key[0] == kind:
                latest[key[1]] = _Leaf(
                    idx=row.idx, subject=row.subject, data=data, salt=bytes(row.salt)
                )
        return latest

    def _compare(
        self,
        kind: str,
        key: str,
        leaves: dict[str, _Leaf],
        place: str,
        subject: str,
        row: dict[str, Any],
    ) -> None:
        leaf = leaves.get(key)
        foreign = self._keyed.foreign.get((kind, key))
        if foreign is not None and (leaf is None or foreign.idx > leaf.idx):
            leaf = foreign
        if leaf is None:
            self._report.add(Divergence(_LAST, place, "has no audit leaf (changed behind the log)"))
        elif leaf.subject != subject or leaf.data.get("row") != commitment(leaf.salt, row):
            self._report.add(
                Divergence(leaf.idx, place, f"differs from what audit leaf {leaf.idx} recorded")
            )

    def _done(self, phase: str, n: int) -> None:
        self._report.rows += n
        self._tick(phase, self._report.rows, None, n)

    def card_events(self) -> None:
        kinds = and_(audit_leaves.c.kind.like("card.%"), audit_leaves.c.kind != "card.chip_bound")
        for events in _keyset(self._session, CardEvent, CardEvent.id, self._chunk):
            card_ids = {ev.card_id for ev in events}
            cards = {
                c.id: c for c in self._session.scalars(select(Card).where(Card.id.in_(card_ids)))
            }
            leaves = self._latest("card_event", (f"card:{c}" for c in cards), kinds)
            for ev in events:
                card = cards.get(ev.card_id)
                if card is None:
                    continue  # the foreign key keeps this from happening
                self._compare(
                    "card_event",
                    str(ev.id),
                    leaves,
                    f"card_events row {ev.id}",
                    f"card:{ev.card_id}",
                    card_event_row(ev, card),
                )
            self._done("card_events", len(events))

    def cards(self) -> None:
        session = self._session
        kinds = audit_leaves.c.kind == "card.chip_bound"
        for cards in _keyset(session, Card, Card.id, self._chunk):
            ids = [c.id for c in cards]
            last_event = (
                select(func.max(CardEvent.id))
                .where(CardEvent.card_id.in_(ids))
                .group_by(CardEvent.card_id)
            )
            last_state: dict[UUID, str] = {
                card_id: state
                for card_id, state in session.execute(
                    select(CardEvent.card_id, CardEvent.to_state).where(
                        CardEvent.id.in_(last_event.scalar_subquery())
                    )
                )
            }
            chipped = [c for c in cards if c.chip_kid is not None or c.document is not None]
            leaves = self._latest("chip", (f"card:{c.id}" for c in chipped), kinds)
            for card in cards:
                place = f"cards row {card.id} ({card.card_number})"
                state = last_state.get(card.id)
                if state is None or state != card.state:
                    self._report.add(
                        Divergence(
                            _LAST,
                            place,
                            f"state {card.state.value!r} is not the state its last recorded "
                            "event set",
                        )
                    )
                if card.chip_kid is not None or card.document is not None:
                    subject = f"card:{card.id}"
                    self._compare("chip", subject, leaves, place, subject, chip_binding_row(card))
            self._done("cards", len(cards))

    def person_changes(self) -> None:
        kinds = and_(audit_leaves.c.kind.like("person.%"), audit_leaves.c.kind != "person.enrolled")
        for changes in _keyset(self._session, PersonChange, PersonChange.id, self._chunk):
            leaves = self._latest(
                "person_change", (f"person:{ch.person_id}" for ch in changes), kinds
            )
            for ch in changes:
                self._compare(
                    "person_change",
                    str(ch.id),
                    leaves,
                    f"person_changes row {ch.id}",
                    f"person:{ch.person_id}",
                    person_change_row(ch),
                )
            self._done("person_changes", len(changes))

    def persons(self) -> None:
        session = self._session
        kinds = audit_leaves.c.kind == "person.enrolled"
        for persons in _keyset(session, Person, Person.id, self._chunk):
            ids = [p.id for p in persons]
            history: dict[UUID, list[tuple[str, str | None, str | None]]] = {}
            for person_id, field_, old, new in session.execute(
                select(
                    PersonChange.person_id,
                    PersonChange.field,
                    PersonChange.old_value,
                    PersonChange.new_value,
                )
                .where(
                    PersonChange.person_id.in_(ids),
                    PersonChange.field.in_(("name", "deceased_on")),
                )
                .order_by(PersonChange.id)
            ):
                history.setdefault(person_id, []).append((field_, old, new))
            leaves = self._latest("person", (f"person:{i}" for i in ids), kinds)
            for person in persons:
                changes = history.get(person.id, [])
                names = [c for c in changes if c[0] == "name"]
                enrolled_name = (names[0][1] if names else None) or person.name
                place = f"persons row {person.id}"
                subject = f"person:{person.id}"
                self._compare(
                    "person",
                    subject,
                    leaves,
                    place,
                    subject,
                    person_row(person, name=enrolled_name),
                )
                if names and names[-1][2] != person.name:
                    self._report.add(
                        Divergence(_LAST, place, "name is not the last recorded name change")
                    )
                deaths = [c for c in changes if c[0] == "deceased_on"]
                died = deaths[-1][2] if deaths else None
                if (person.deceased_on.isoformat() if person.deceased_on else None) != died:
                    self._report.add(
                        Divergence(_LAST, place, "date of death is not the recorded one")
                    )
            self._done("persons", len(persons))


def _check_checkpoint(
    cp: Any,
    root: bytes,
    key_for: Callable[[str], VerifyingKey | None],
    add: Callable[[Divergence], None],
) -> None:
    place = f"audit_checkpoints row {cp.id} (size {cp.size})"
    position = max(cp.size - 1, 0)
    key = key_for(cp.kid)
    if key is None:
        add(Divergence(position, place, f"signing key {cp.kid} is not in the key store"))
        return
    try:
        signed = decode_checkpoint(cp.jws, key=key)
    except CoreError as exc:
        add(Divergence(position, place, f"signature: {exc.detail}"))
        return
    if signed.size != cp.size or signed.root != bytes(cp.root_hash):
        add(Divergence(position, place, "row differs from what was signed"))
    elif signed.root != root:
        add(
            Divergence(
                position,
                place,
                f"signed root differs from the root recomputed from leaves [0, {cp.size}): "
                "a leaf in that range was changed, removed, moved or inserted",
            )
        )

"""Recompute the audit log from the database and find where it diverges.

Checks, in log order: every leaf is present (no gaps), its stored hash is the hash of its
data, the stored subtree hashes are the ones recomputed from the leaves, the tree size
row agrees, every stored checkpoint verifies (signature, size, root) against the
recomputed tree; then every audited business row against the leaf that recorded it, and
every leaf that names a row against that row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from cardsvc.audit.log import commitment
from cardsvc.audit.rows import card_event_row, chip_binding_row, person_change_row, person_row
from cardsvc.audit.service import CHUNK
from cardsvc.audit.tables import audit_checkpoints, audit_leaves, audit_nodes, audit_state
from cardsvc.core.checkpoint import decode_checkpoint
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.merkle import EMPTY_ROOT, leaf_hash, node_hash
from cardsvc.db.models import Card, CardEvent, Person, PersonChange

_LAST = 2**63


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
    leaves: int = 0
    checkpoints: int = 0
    rows: int = 0
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def first(self) -> Divergence | None:
        return min(self.divergences) if self.divergences else None


@dataclass
class _Leaf:
    idx: int
    subject: str
    data: dict[str, Any]
    salt: bytes


def _leaves(connection: Connection) -> Iterator[Any]:
    last = -1
    while True:
        rows = connection.execute(
            select(audit_leaves)
            .where(audit_leaves.c.idx > last)
            .order_by(audit_leaves.c.idx)
            .limit(CHUNK)
        ).all()
        yield from rows
        if len(rows) < CHUNK:
            return
        last = rows[-1].idx


def verify(connection: Connection, key_for: Callable[[str], VerifyingKey | None]) -> Report:
    """Check everything; ``key_for(kid)`` gives checkpoint keys (``None``: unknown)."""
    report = Report()
    out = report.divergences
    checkpoints = connection.execute(
        select(audit_checkpoints).order_by(audit_checkpoints.c.size, audit_checkpoints.c.id)
    ).all()
    report.checkpoints = len(checkpoints)
    pending = list(checkpoints)
    stack: list[tuple[int, bytes]] = []  # frontier of recomputed complete subtrees
    completed: list[tuple[int, int, bytes]] = []  # (level, index, hash) to compare
    by_kind: dict[str, dict[str, _Leaf]] = {}
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
                    out.append(Divergence(first_leaf, place, f"audit_nodes ({level}, {i}) missing"))
                elif bytes(stored[i]) != h:
                    out.append(
                        Divergence(
                            first_leaf,
                            place,
                            f"audit_nodes ({level}, {i}) differs from the hash recomputed "
                            "from these leaves (a leaf was changed, moved or replaced)",
                        )
                    )
        completed.clear()

    def check_checkpoints() -> None:
        while pending and pending[0].size <= expected:
            cp = pending.pop(0)
            if cp.size == expected:
                _check_checkpoint(cp, root(), key_for, out)

    for row in _leaves(connection):
        if row.idx != expected:
            if row.idx > expected:
                out.append(
                    Divergence(expected, f"leaf {expected}", f"missing (next leaf is {row.idx})")
                )
            else:
                out.append(Divergence(row.idx, f"leaf {row.idx}", "out of order"))
            break
        digest = leaf_hash(row.data.encode("ascii"))
        if digest != bytes(row.leaf_hash):
            out.append(
                Divergence(row.idx, f"leaf {row.idx}", "stored hash does not match its data")
            )
        try:
            parsed = json.loads(row.data)
            kind, data = parsed["kind"], parsed["data"]
            if kind != row.kind or parsed["subject"] != row.subject:
                raise ValueError("columns differ from the leaf data")
        except (ValueError, KeyError, TypeError) as exc:
            out.append(Divergence(row.idx, f"leaf {row.idx}", f"malformed leaf data: {exc}"))
            kind, data = row.kind, {}
        key = _row_key(kind, row.subject, data)
        if key is not None:
            by_kind.setdefault(key[0], {})[key[1]] = _Leaf(
                idx=row.idx, subject=row.subject, data=data, salt=bytes(row.salt)
            )
        level, h = 0, digest
        index = row.idx
        while stack and stack[-1][0] == level:
            h = node_hash(stack.pop()[1], h)
            level += 1
            index >>= 1
            completed.append((level, index, h))
        stack.append((level, h))
        expected += 1
        if len(completed) >= CHUNK:
            check_nodes()
        check_checkpoints()
    check_nodes()
    check_checkpoints()
    report.leaves = expected
    for cp in pending:
        out.append(
            Divergence(
                min(cp.size - 1, expected),
                f"audit_checkpoints row {cp.id}",
                f"signed size {cp.size} but only {expected} leaves are stored",
            )
        )
    size = connection.scalar(select(audit_state.c.size).where(audit_state.c.id == 1))
    if size != expected:
        out.append(
            Divergence(
                min(expected, size or 0),
                "audit_state",
                f"tree size {size} but {expected} consecutive leaves are stored",
            )
        )
    node_count = connection.scalar(select(func.count()).select_from(audit_nodes)) or 0
    want = sum(expected >> level for level in range(1, max(expected.bit_length(), 1)))
    if node_count != want:
        out.append(
            Divergence(_LAST, "audit_nodes", f"{node_count} rows, expected {want} for the tree")
        )
    report.rows = _check_rows(connection, by_kind, out)
    return report


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


def _check_checkpoint(
    cp: Any, root: bytes, key_for: Callable[[str], VerifyingKey | None], out: list[Divergence]
) -> None:
    place = f"audit_checkpoints row {cp.id} (size {cp.size})"
    position = max(cp.size - 1, 0)
    key = key_for(cp.kid)
    if key is None:
        out.append(Divergence(position, place, f"signing key {cp.kid} is not in the key store"))
        return
    try:
        signed = decode_checkpoint(cp.jws, key=key)
    except CoreError as exc:
        out.append(Divergence(position, place, f"signature: {exc.detail}"))
        return
    if signed.size != cp.size or signed.root != bytes(cp.root_hash):
        out.append(Divergence(position, place, "row differs from what was signed"))
    elif signed.root != root:
        out.append(
            Divergence(
                position,
                place,
                f"signed root differs from the root recomputed from leaves [0, {cp.size}): "
                "a leaf in that range was changed, removed, moved or inserted",
            )
        )


def _check_rows(
    connection: Connection, leaves: dict[str, dict[str, _Leaf]], out: list[Divergence]
) -> int:
    rows = 0
    seen: dict[str, set[str]] = {
        k: set() for k in ("card_event", "chip", "person", "person_change")
    }

    def compare(kind: str, key: str, place: str, subject: str, row: dict[str, Any]) -> None:
        leaf = leaves.get(kind, {}).get(key)
        seen[kind].add(key)
        if leaf is None:
            out.append(Divergence(_LAST, place, "has no audit leaf (changed behind the log)"))
        elif leaf.subject != subject or leaf.data.get("row") != commitment(leaf.salt, row):
            out.append(
                Divergence(leaf.idx, place, f"differs from what audit leaf {leaf.idx} recorded")
            )

    session = Session(bind=connection)
    cards: dict[UUID, Card] = {c.id: c for c in session.scalars(select(Card))}
    last_state: dict[UUID, tuple[int, str]] = {}
    for ev in session.scalars(select(CardEvent).order_by(CardEvent.id)):
        rows += 1
        card = cards.get(ev.card_id)
        if card is None:
            continue  # the foreign key keeps this from happening
        compare(
            "card_event",
            str(ev.id),
            f"card_events row {ev.id}",
            f"card:{ev.card_id}",
            card_event_row(ev, card),
        )
        last_state[ev.card_id] = (ev.id, ev.to_state)
    for card in cards.values():
        rows += 1
        place = f"cards row {card.id} ({card.card_number})"
        state = last_state.get(card.id)
        if state is None or state[1] != card.state:
            out.append(
                Divergence(
                    _LAST,
                    place,
                    f"state {card.state!r} is not the state its last recorded event set",
                )
            )
        if card.chip_kid is not None or card.document is not None:
            compare("chip", f"card:{card.id}", place, f"card:{card.id}", chip_binding_row(card))
    changes: dict[UUID, list[PersonChange]] = {}
    for ch in session.scalars(select(PersonChange).order_by(PersonChange.id)):
        rows += 1
        changes.setdefault(ch.person_id, []).append(ch)
        compare(
            "person_change",
            str(ch.id),
            f"person_changes row {ch.id}",
            f"person:{ch.person_id}",
            person_change_row(ch),
        )
    for person in session.scalars(select(Person)):
        rows += 1
        history = changes.get(person.id, [])
        names = [c for c in history if c.field == "name"]
        enrolled_name = (names[0].old_value if names else None) or person.name
        place = f"persons row {person.id}"
        compare(
            "person",
            f"person:{person.id}",
            place,
            f"person:{person.id}",
            person_row(person, name=enrolled_name),
        )
        if names and names[-1].new_value != person.name:
            out.append(Divergence(_LAST, place, "name is not the last recorded name change"))
        deaths = [c for c in history if c.field == "deceased_on"]
        died = deaths[-1].new_value if deaths else None
        if (person.deceased_on.isoformat() if person.deceased_on else None) != died:
            out.append(Divergence(_LAST, place, "date of death is not the recorded one"))
    labels = {
        "card_event": "card_events row",
        "chip": "chip binding of",
        "person": "persons row",
        "person_change": "person_changes row",
    }
    for kind, by_key in leaves.items():
        for key, leaf in by_key.items():
            if key not in seen[kind]:
                out.append(
                    Divergence(
                        leaf.idx, f"leaf {leaf.idx}", f"records {labels[kind]} {key}, which is gone"
                    )
                )
    return rows

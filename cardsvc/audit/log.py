"""Append leaves to the audit log inside the caller's database transaction.

Every change the issuer makes calls :func:`append` in the *same* transaction as the change,
so the change and its leaf commit or roll back together: no change without its leaf, no
leaf without its change. For example, in an e-card binding or a transaction::

    with write_session(engine) as session:
        session.add(binding)
        session.flush()
        leaf = append(
            session,
            kind="ecard.bound",                     # what happened
            actor=principal,                        # who (client id, never a person's name)
            subject=f"ecard:{binding.id}",          # which record
            data={"card": str(binding.card_id)},    # identifiers and amounts only
            commit=binding_row(binding),            # optional: the row, salted and hashed
            now=now,                                # when
        )
        # put `leaf` in the receipt: a terminal later checks it with cardsvc.core.merkle

``data`` is stored in clear in the leaf and must hold no personal data (names, citizen ID
numbers): put those in ``commit``, which the leaf holds only as
``SHA-256(salt || canonical JSON)`` with a random per-leaf salt that is never published,
so a guessable value (a birth date, an ID number) cannot be confirmed from the leaf.

Concurrency: the leaf index comes from the single row of ``audit_state``, incremented
with ``UPDATE ... RETURNING``; the row lock (PostgreSQL) or the write lock (SQLite,
``BEGIN IMMEDIATE`` in :func:`cardsvc.registry.db.write_session`) is held until the
transaction ends, so indexes are unique and consecutive, and appends serialise. Call
:func:`append` last in the transaction, after the row locks the change needs.

Each append also stores the hashes of the subtrees it completes (``audit_nodes``): one
insert amortised, at most log2(n), so appends never rescan and proofs read O(log n) rows.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.orm import Session

from cardsvc.audit import guard
from cardsvc.audit.events import Actor, AuditError, AuditEvent
from cardsvc.core.merkle import (
    NodeReader,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    subtree_root,
)
from cardsvc.db.models import audit_leaves, audit_nodes, audit_state

LEAF_VERSION = 1
SALT_SIZE = 16
_T = TypeVar("_T")


class AuditStoreError(AuditError):
    """The stored tree is missing a node it should have (the store was tampered with)."""

    code = "audit-store"


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
_PLAIN = frozenset({str, int, bool, type(None)})


def _jsonable(value: object) -> object:
    # Exact-type fast paths first (batch issuance hashes two rows per card); the
    # isinstance chain below gives the same result for everything, subclasses included.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _PLAIN else _jsonable(v)
            for k, v in value.items()  # type: ignore[attr-defined]
        }
    if kind is UUID:
        return str(value)
    if kind is datetime:
        return iso(value)  # type: ignore[arg-type]
    if kind is date:
        return value.isoformat()  # type: ignore[attr-defined]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        raise TypeError("audit data must not hold floats (use int fen, counts)")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    raise TypeError(f"audit data cannot hold {type(value).__name__}")


def iso(at: datetime) -> str:
    """An aware time as UTC ISO 8601 with microseconds (the leaf's ``at``)."""
    if at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    # isoformat, not strftime: the same text (years 1000-9999), several times faster.
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(value: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, ASCII only."""
    return _CANONICAL.encode(_jsonable(value)).encode("ascii")


def commitment(salt: bytes, row: Mapping[str, Any]) -> str:
    """``hex(SHA-256(salt || canonical(row)))``: what a leaf holds in place of a row."""
    return hashlib.sha256(salt + canonical(row)).hexdigest()


def leaf_input(
    *, kind: str, actor: str, subject: str, at: datetime, data: Mapping[str, Any]
) -> bytes:
    """The exact bytes a leaf hashes (RFC 6962 leaf input)."""
    return canonical(
        {
            "v": LEAF_VERSION,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "at": at,
            "data": data,
        }
    )


@dataclass(frozen=True, slots=True)
class _Leaf:
    raw: bytes
    digest: bytes
    salt: bytes


def _leaf(event: AuditEvent, actor: Actor, now: datetime) -> _Leaf:
    salt = secrets.token_bytes(SALT_SIZE)
    payload = dict(event.data)
    if event.commit is not None:
        payload["row"] = commitment(salt, event.commit)
    raw = leaf_input(
        kind=event.kind.value, actor=str(actor), subject=event.subject, at=now, data=payload
    )
    return _Leaf(raw=raw, digest=leaf_hash(raw), salt=salt)


def _grow(connection: Connection, n: int) -> int:
    """Take ``n`` consecutive indexes (holding the tree's lock); return the first."""
    size = connection.execute(
        update(audit_state)
        .where(audit_state.c.id == 1)
        .values(size=audit_state.c.size + n)
        .returning(audit_state.c.size)
    ).scalar_one()
    return int(size) - n


def _leaf_row(index: int, event: AuditEvent, leaf: _Leaf, now: datetime) -> dict[str, Any]:
    return {
        "idx": index,
        "leaf_hash": leaf.digest,
        "kind": event.kind.value,
        "subject": event.subject,
        "at": now,
        "data": leaf.raw.decode("ascii"),
        "salt": leaf.salt,
    }


def append(session: Session, event: AuditEvent, *, actor: Actor, now: datetime) -> int:
    """Append ``event`` in ``session``'s transaction and return its leaf index.

    ``actor`` did it at ``now``. Call it after the flush that gives the row its id (the
    event usually names it); ``event.row`` settles that row with the flush guard.
    """
    leaf = _leaf(event, actor, now)
    connection = session.connection()
    index = _grow(connection, 1)
    connection.execute(insert(audit_leaves).values(**_leaf_row(index, event, leaf, now)))
    _store_completed_subtrees(connection, index, leaf.digest)
    if event.row is not None:
        guard.covered(session, event.row)
    return index


def _bound(connection: Connection, column: Any, value: object) -> object:
    """``value`` as the driver receives it for ``column`` (its type's bind processing)."""
    process = column.type.bind_processor(connection.dialect)
    return value if process is None else process(value)


def _insert_many(connection: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """``executemany`` of ``rows`` (values in the table's column order, already as the
    driver takes them): no per-row parameter processing, which costs more than the
    insert itself for tens of thousands of leaves."""
    if not rows:
        return
    compiled = insert(table).compile(dialect=connection.dialect)
    names = [c.key for c in table.columns]
    if compiled.positiontup is not None:
        order = [names.index(k) for k in compiled.positiontup]
        params: list[Any] = [tuple(row[i] for i in order) for row in rows]
    else:
        params = [dict(zip(names, row, strict=True)) for row in rows]
    connection.exec_driver_sql(str(compiled), params)


def append_many(
    connection: Connection, events: Sequence[AuditEvent], *, actor: Actor, now: datetime
) -> range:
    """Append ``events`` in order in ``connection``'s transaction; return their indexes.

    For bulk writers (batch issuance): one update of the tree size, one ``executemany``
    of leaves and one of the subtree hashes they complete, computed in memory from the
    tree's frontier (O(log n) stored hashes read once).
    """
    if not events:
        return range(0)
    leaves = [_leaf(event, actor, now) for event in events]
    first = _grow(connection, len(leaves))
    keys: list[tuple[int, int]] = []
    offset = 0
    for level in range(first.bit_length() - 1, -1, -1):
        if first >> level & 1:
            keys.append((level, offset >> level))
            offset += 1 << level
    found = StoredTree(connection).fetch(keys)
    missing = [key for key in keys if key not in found]
    if missing:
        level, index = missing[0]
        raise AuditStoreError(f"audit tree node (level {level}, index {index}) is missing")
    stack = [found[key] for key in keys]
    nodes: list[tuple[int, int, bytes]] = []
    for i, leaf in enumerate(leaves, start=first):
        level, index, h = 0, i, leaf.digest
        while index & 1:
            h = node_hash(stack.pop(), h)
            level, index = level + 1, index >> 1
            nodes.append((level, index, h))
        stack.append(h)
    at = _bound(connection, audit_leaves.c.at, now)
    _insert_many(
        connection,
        audit_leaves,
        [
            (
                first + n,
                leaf.digest,
                e.kind.value,
                e.subject,
                at,
                leaf.raw.decode("ascii"),
                leaf.salt,
            )
            for n, (e, leaf) in enumerate(zip(events, leaves, strict=True))
        ],
    )
    _insert_many(connection, audit_nodes, nodes)
    return range(first, first + len(leaves))


def _store_completed_subtrees(connection: Connection, index: int, digest: bytes) -> None:
    level, i, h = 0, index, digest
    while i & 1:
        h = node_hash(_read_node(connection, level, i - 1), h)
        level, i = level + 1, i >> 1
        connection.execute(insert(audit_nodes).values(level=level, idx=i, hash=h))


def _read_node(connection: Connection, level: int, index: int) -> bytes:
    if level == 0:
        value = connection.scalar(
            select(audit_leaves.c.leaf_hash).where(audit_leaves.c.idx == index)
        )
    else:
        value = connection.scalar(
            select(audit_nodes.c.hash).where(
                audit_nodes.c.level == level, audit_nodes.c.idx == index
            )
        )
    if value is None:
        raise AuditStoreError(f"audit tree node (level {level}, index {index}) is missing")
    return bytes(value)


class StoredTree:
    """Proofs and roots over the stored tree, reading O(log n) rows in one query per level."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def size(self) -> int:
        return int(
            self._connection.scalar(select(audit_state.c.size).where(audit_state.c.id == 1)) or 0
        )

    def fetch(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        by_level: dict[int, list[int]] = {}
        for level, index in keys:
            by_level.setdefault(level, []).append(index)
        found: dict[tuple[int, int], bytes] = {}
        for level, indexes in by_level.items():
            if level == 0:
                rows = self._connection.execute(
                    select(audit_leaves.c.idx, audit_leaves.c.leaf_hash).where(
                        audit_leaves.c.idx.in_(indexes)
                    )
                )
            else:
                rows = self._connection.execute(
                    select(audit_nodes.c.idx, audit_nodes.c.hash).where(
                        audit_nodes.c.level == level, audit_nodes.c.idx.in_(indexes)
                    )
                )
            for index, value in rows:
                found[(level, int(index))] = bytes(value)
        return found

    def _two_pass(self, compute: Callable[[NodeReader], _T]) -> _T:
        wanted: set[tuple[int, int]] = set()

        def record(level: int, index: int) -> bytes:
            wanted.add((level, index))
            return b"\x00" * 32

        compute(record)
        found = self.fetch(wanted)

        def read(level: int, index: int) -> bytes:
            try:
                return found[(level, index)]
            except KeyError:
                raise AuditStoreError(
                    f"audit tree node (level {level}, index {index}) is missing"
                ) from None

        return compute(read)

    def root(self, size: int) -> bytes:
        return self._two_pass(lambda node: subtree_root(0, size, node))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._two_pass(lambda node: inclusion_proof(index, size, node))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._two_pass(lambda node: consistency_proof(first, second, node))

    def leaf_hash(self, index: int) -> bytes:
        return _read_node(self._connection, 0, index)

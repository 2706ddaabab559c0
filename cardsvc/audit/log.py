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
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session

from cardsvc.audit.tables import audit_leaves, audit_nodes, audit_state
from cardsvc.core.merkle import (
    NodeReader,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    subtree_root,
)
from cardsvc.errors import CardsvcError

LEAF_VERSION = 1
SALT_SIZE = 16
_T = TypeVar("_T")


class AuditStoreError(CardsvcError):
    """The stored tree is missing a node it should have (the store was tampered with)."""

    code = "audit-store"


def _jsonable(value: object) -> object:
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
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(value: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        _jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


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


def append(
    session: Session,
    *,
    kind: str,
    actor: str,
    subject: str,
    data: Mapping[str, Any],
    now: datetime,
    commit: Mapping[str, Any] | None = None,
) -> int:
    """Append one leaf in ``session``'s transaction and return its index.

    ``kind`` says what happened (``card.issue``, ``person.enrolled``, ``key.rotated``, ...),
    ``actor`` who did it, ``subject`` which record (``card:<uuid>``), ``now`` when.
    ``data`` is stored in clear; ``commit`` (a business row) only as a salted hash under
    ``data["row"]``. Pending ORM changes are flushed first.
    """
    if not kind or len(kind) > 48 or len(subject) > 128:
        raise ValueError("audit kind must be 1-48 characters and subject at most 128")
    salt = secrets.token_bytes(SALT_SIZE)
    payload = dict(data)
    if commit is not None:
        if "row" in payload:
            raise ValueError("data['row'] is reserved for the commitment")
        payload["row"] = commitment(salt, commit)
    raw = leaf_input(kind=kind, actor=actor, subject=subject, at=now, data=payload)
    digest = leaf_hash(raw)
    size = session.execute(
        update(audit_state)
        .where(audit_state.c.id == 1)
        .values(size=audit_state.c.size + 1)
        .returning(audit_state.c.size)
    ).scalar_one()
    index = int(size) - 1
    connection = session.connection()
    connection.execute(
        insert(audit_leaves).values(
            idx=index,
            leaf_hash=digest,
            kind=kind,
            subject=subject,
            at=now,
            data=raw.decode("ascii"),
            salt=salt,
        )
    )
    _store_completed_subtrees(connection, index, digest)
    return index


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

"""The issuer's audit log service: signed checkpoints, proofs, receipts, key events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from cardsvc.audit.events import KEYSTORE, AuditError, AuditEvent, AuditKind
from cardsvc.audit.log import StoredTree, append, leaf_input
from cardsvc.audit.pending import PendingKeyEvents
from cardsvc.core.checkpoint import sign_checkpoint
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.merkle import Frontier, leaf_hash
from cardsvc.db.models import audit_checkpoints, audit_leaves
from cardsvc.db.session import read_session, write_session
from cardsvc.errors import Malformed
from cardsvc.keystore.service import KeyService

log = logging.getLogger(__name__)

#: Leaves read per query when recomputing hashes from leaf data.
CHUNK = 10_000


class ProofRangeError(Malformed, AuditError):
    """A proof was asked for indexes or sizes outside the tree."""

    code = "audit-proof-range"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.fields: dict[str, Any] = fields


class RootMismatchError(AuditError):
    """Recomputing the root from the stored leaves did not give the stored tree's root."""

    code = "audit-root-mismatch"


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    id: int
    size: int
    root: bytes
    at: datetime
    kid: str
    jws: str


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(
        id=row.id, size=row.size, root=bytes(row.root_hash), at=row.at, kid=row.kid, jws=row.jws
    )


def recompute_leaf_hashes(connection: Connection, start: int, end: int) -> Iterator[bytes]:
    """Leaf hashes of ``[start, end)`` recomputed from the stored leaf data, checked
    against the stored leaf hashes and for gaps (streamed, ``CHUNK`` leaves per query)."""
    expected = start
    for chunk in range(start, end, CHUNK):
        rows = connection.execute(
            select(audit_leaves.c.idx, audit_leaves.c.data, audit_leaves.c.leaf_hash)
            .where(audit_leaves.c.idx >= chunk, audit_leaves.c.idx < min(end, chunk + CHUNK))
            .order_by(audit_leaves.c.idx)
        ).all()
        for idx, data, stored in rows:
            if idx != expected:
                raise RootMismatchError(f"audit leaf {expected} is missing")
            digest = leaf_hash(data.encode("ascii"))
            if digest != bytes(stored):
                raise RootMismatchError(f"audit leaf {idx}: stored hash does not match its data")
            expected += 1
            yield digest
    if expected != end:
        raise RootMismatchError(f"audit leaf {expected} is missing")


class AuditLog:
    """Checkpoints and proofs over the stored tree."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        *,
        issuer: str,
        pending: PendingKeyEvents | None = None,
    ) -> None:
        self._engine = engine
        #: Where key events wait while the log cannot take them (``None``: they fail).
        self.pending = pending
        self._warned = False
        self._keys = keys
        self._issuer = issuer
        self._lock = threading.Lock()

    # -- checkpoints ----------------------------------------------------------------

    def latest(self) -> StoredCheckpoint | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(audit_checkpoints).order_by(audit_checkpoints.c.id.desc()).limit(1)
            ).first()
        return _checkpoint(row) if row is not None else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.id))
            return [_checkpoint(r) for r in rows]

    def recompute_root(self, connection: Connection, size: int, *, full: bool = False) -> bytes:
        """The root of the first ``size`` leaves, recomputed from the leaf data.

        Incremental by default: the last checkpoint's root is rebuilt from the stored
        subtree hashes (O(log n) rows) and must match what was signed; only the leaves
        after it are re-read and rehashed from their data. ``full`` rehashes every leaf.
        """
        frontier = Frontier()
        start = 0
        previous = None if full else self.latest()
        if previous is not None and 0 < previous.size <= size:
            tree = StoredTree(connection)
            if tree.root(previous.size) != previous.root:
                raise RootMismatchError(
                    f"stored subtree hashes do not give checkpoint {previous.id}'s root "
                    "(run `cardsvc audit verify`)"
                )
            # Seed the frontier with the complete subtrees of the first previous.size leaves.
            keys = []
            offset = 0
            for level in range(previous.size.bit_length() - 1, -1, -1):
                if previous.size >> level & 1:
                    keys.append((level, offset >> level))
                    offset += 1 << level
            found = tree.fetch(keys)
            frontier.seed([(level, found[(level, i)]) for level, i in keys], previous.size)
            start = previous.size
        for digest in recompute_leaf_hashes(connection, start, size):
            frontier.append(digest)
        root = frontier.root()
        stored = StoredTree(connection).root(size)
        if root != stored:
            raise RootMismatchError(
                f"the root recomputed from leaves [{start}, {size}) differs from the stored tree"
            )
        return root

    def sign_checkpoint(self, *, now: datetime, full: bool = False) -> StoredCheckpoint:
        """Recompute the root from the stored leaves, sign it and store the checkpoint."""
        with self._lock, read_session(self._engine) as session:
            connection = session.connection()
            size = StoredTree(connection).size()
            root = self.recompute_root(connection, size, full=full)
        signer = self._keys.signer(KeyPurpose.AUDIT_CHECKPOINT, now=now)
        token = sign_checkpoint(
            issuer=self._issuer, size=size, root=root, issued_at=now, signer=signer
        )
        with write_session(self._engine) as session:
            new_id = session.execute(
                insert(audit_checkpoints)
                .values(size=size, root_hash=root, at=now, kid=signer.kid, jws=token)
                .returning(audit_checkpoints.c.id)
            ).scalar_one()
        return StoredCheckpoint(id=new_id, size=size, root=root, at=now, kid=signer.kid, jws=token)

    def current(self, *, now: datetime, max_age: timedelta) -> StoredCheckpoint:
        """The latest checkpoint; a new one is signed when the tree grew and the latest is
        older than ``max_age`` (or there is none)."""
        latest = self.latest()
        if latest is not None and now - latest.at < max_age:
            return latest
        if latest is not None and latest.size == self.size():
            return latest
        return self.sign_checkpoint(now=now)

    # -- proofs ---------------------------------------------------------------------

    def size(self) -> int:
        with self._engine.connect() as connection:
            return StoredTree(connection).size()

    def inclusion(self, index: int, size: int | None = None) -> tuple[int, bytes, list[bytes]]:
        """``(size, leaf hash, audit path)`` of leaf ``index`` in the tree of ``size``."""
        with self._engine.connect() as connection:
            tree = StoredTree(connection)
            current = tree.size()
            size = current if size is None else size
            if not 0 < size <= current:
                raise ProofRangeError(
                    f"size {size} is not between 1 and the tree size {current}", tree_size=current
                )
            if not 0 <= index < size:
                raise ProofRangeError(f"index {index} is not below size {size}", tree_size=current)
            return size, tree.leaf_hash(index), tree.inclusion_proof(index, size)

    def consistency(self, first: int, second: int) -> list[bytes]:
        with self._engine.connect() as connection:
            tree = StoredTree(connection)
            current = tree.size()
            if not 0 < first <= second <= current:
                raise ProofRangeError(
                    f"need 0 < first <= second <= tree size {current}", tree_size=current
                )
            return tree.consistency_proof(first, second)

    def leaf_of(self, subject: str, kind: str) -> int | None:
        """The latest leaf of ``kind`` about ``subject`` (a receipt's index)."""
        with self._engine.connect() as connection:
            value = connection.scalar(
                select(audit_leaves.c.idx)
                .where(audit_leaves.c.subject == subject, audit_leaves.c.kind == kind)
                .order_by(audit_leaves.c.idx.desc())
                .limit(1)
            )
        return None if value is None else int(value)

    def leaf_data(self, index: int) -> bytes:
        with self._engine.connect() as connection:
            data = connection.scalar(select(audit_leaves.c.data).where(audit_leaves.c.idx == index))
        if data is None:
            raise ProofRangeError(f"no leaf {index}")
        return str(data).encode("ascii")

    # -- key events -----------------------------------------------------------------

    def record_key_event(
        self, kind: str, *, subject: str, data: Mapping[str, Any], now: datetime
    ) -> int | None:
        """Append a key event in its own transaction (the key store is files, not rows).

        Events kept while the log was not there go first, so the log keeps their order.
        When the database has no audit tables yet (``cardsvc keys init`` before ``cardsvc
        db upgrade``) or cannot be reached, the event is kept in :attr:`pending` and
        ``None`` returned; without a pending store the error propagates.
        """
        event = AuditEvent(kind=AuditKind(kind), subject=subject, data=data)
        try:
            if self.pending is not None:
                self.pending.drain(self._engine)
            with write_session(self._engine) as session:
                return append(session, event, actor=KEYSTORE, now=now)
        except (OperationalError, ProgrammingError) as exc:
            if self.pending is None:
                raise
            self.pending.keep(event, actor=KEYSTORE, at=now)
            log.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "audit log not reachable (%s): key events wait in %s until "
                "`cardsvc db upgrade` appends them",
                exc.orig,
                self.pending.path,
            )
            self._warned = True
            return None


__all__ = ["AuditLog", "ProofRangeError", "StoredCheckpoint", "leaf_input"]

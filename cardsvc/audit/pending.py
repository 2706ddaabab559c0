"""Key events kept on disk until the audit log exists, then appended: none is lost.

The key store is files and may change before the database has its schema (``cardsvc
keys init`` before ``cardsvc db upgrade``, the README's order) or while the database is
unreachable. Such events wait, one JSON line each, in a file beside the keys, and are
appended in their order, with their own time, by the next key event that reaches the
log or by ``cardsvc db upgrade``. Draining is idempotent: an event whose leaf is already
in the log (a crash between the commit and the truncation) is not appended twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, select

from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.audit.log import append, canonical
from cardsvc.db.models import audit_leaves
from cardsvc.db.session import write_session

FILE_NAME = "audit-pending.jsonl"


@dataclass(frozen=True, kw_only=True)
class PendingEvent:
    event: AuditEvent
    actor: Actor
    at: datetime


class PendingKeyEvents:
    """The waiting key events in ``path`` (created on first use, with its directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self, mode: str) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open(mode, encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # one writer or drainer at a time
            yield handle

    def keep(self, event: AuditEvent, *, actor: Actor, at: datetime) -> None:
        line = canonical(
            {"kind": event.kind.value, "subject": event.subject, "data": event.data,
             "actor": str(actor), "at": at}
        )  # fmt: skip
        with self._locked("a") as handle:
            handle.write(line.decode("ascii") + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self._locked("r") as handle:
            return sum(1 for line in handle if line.strip())

    def drain(self, engine: Engine) -> int:
        """Append every waiting event in one transaction, then empty the file; returns
        how many were appended. Raises what the database raises (nothing is dropped)."""
        if not self.path.exists():
            return 0
        with self._locked("r+") as handle:
            waiting = [_parse(line) for line in handle if line.strip()]
            if not waiting:
                return 0
            appended = 0
            with write_session(engine) as session:
                for pending in waiting:
                    if not _in_log(session.connection(), pending):
                        append(session, pending.event, actor=pending.actor, now=pending.at)
                        appended += 1
            handle.seek(0)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        return appended


def _parse(line: str) -> PendingEvent:
    raw: Mapping[str, Any] = json.loads(line)
    return PendingEvent(
        event=AuditEvent(kind=AuditKind(raw["kind"]), subject=raw["subject"], data=raw["data"]),
        actor=Actor(raw["actor"]),
        at=datetime.fromisoformat(raw["at"]),
    )


def _in_log(connection: Any, pending: PendingEvent) -> bool:
    found = connection.scalar(
        select(audit_leaves.c.idx).where(
            audit_leaves.c.subject == pending.event.subject,
            audit_leaves.c.kind == pending.event.kind.value,
            audit_leaves.c.at == pending.at,
        )
    )
    return found is not None

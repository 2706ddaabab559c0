"""The journal as the page uses it: one holder at a time, and the counts the clerk sees.

The page serves requests and syncs on several threads, but a journal has one writer (see
:class:`reader_agent.journal.Journal`): every use goes through :meth:`Books.open`, which
holds one lock and opens the journal for that use only, as the CLI commands do. Opening
re-verifies the hash chain, so damage is noticed at the next use, not at the next restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardsvc.core.errors import CoreError
from reader_agent.journal import Journal, JournalError, JournalRecord, RecordState

__all__ = ["Books", "JournalSummary"]


@dataclass(frozen=True, kw_only=True)
class JournalSummary:
    intact: bool
    reason: str | None
    pending: int  # signed, not yet answered by the issuer
    conflicts: int  # held by the issuer for review (never paid)
    rejected: int

    def to_json(self) -> dict[str, Any]:
        return {"intact": self.intact, "reason": self.reason, "pending": self.pending,
                "conflicts": self.conflicts, "rejected": self.rejected}  # fmt: skip


class Books:
    """The journal in ``state_dir`` for terminal ``terminal_id``."""

    def __init__(self, state_dir: Path, *, terminal_id: str) -> None:
        self.state_dir = state_dir
        self.terminal_id = terminal_id
        self._lock = threading.Lock()

    @contextmanager
    def open(self) -> Iterator[Journal]:
        with self._lock, Journal(self.state_dir, terminal_id=self.terminal_id) as journal:
            yield journal

    def summary(self) -> JournalSummary:
        try:
            with self.open() as journal:
                report = journal.report
                records = journal.records()
                pending = [r for r in journal.pending() if r.state is RecordState.SIGNED]
        except JournalError as exc:
            return JournalSummary(intact=False, reason=exc.detail, pending=0, conflicts=0,
                                  rejected=0)  # fmt: skip
        return JournalSummary(
            intact=report.intact,
            reason=report.reason,
            pending=len(pending),
            conflicts=sum(r.state is RecordState.CONFLICT for r in records),
            rejected=sum(r.state is RecordState.REJECTED for r in records),
        )

    def signed_records(self, *, card_number: str | None, limit: int) -> list[JournalRecord]:
        """The records the card signed (a receipt each), newest first; only
        ``card_number``'s when given. Raises JournalError for a journal that cannot open."""
        with self.open() as journal:
            records = journal.records()
        out: list[JournalRecord] = []
        for record in reversed(records):
            if record.state in (RecordState.PREPARED, RecordState.VOID) or record.damaged:
                continue
            try:
                card = record.transaction.card
            except CoreError:
                continue
            if card_number is None or card == card_number:
                out.append(record)
                if len(out) >= limit:
                    break
        return out

    def signed_record(self, seq: int) -> JournalRecord | None:
        """Record ``seq`` if the card signed it; None otherwise."""
        with self.open() as journal:
            try:
                record = journal.get(seq)
            except JournalError:
                return None
        if record.state in (RecordState.PREPARED, RecordState.VOID) or record.damaged:
            return None
        return record

"""pending() reads only unsettled seqs, and answers exactly what the full fold answers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reader_agent.journal import Journal, RecordState
from tests.agent.test_journal import TERMINAL, _data, _full


def _by_fold(journal: Journal) -> list[int]:
    waiting = (RecordState.SIGNED, RecordState.VOID)
    return [r.seq for r in journal.records() if r.state in waiting and r.answer is None]


def test_pending_matches_the_full_fold(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        for counter in range(1, 7):
            _full(journal, counter)
        journal.prepare(mode="offline", nonce=bytes(16), data=_data(journal))  # torn: seq 7
        journal.void(7, "interrupted")
        journal.prepare(mode="offline", nonce=bytes(16), data=_data(journal))  # seq 8, unsigned
        journal.settle({2: (RecordState.ACCEPTED, {"outcome": "accepted"}),
                        5: (RecordState.CONFLICT, {"outcome": "conflict"})})  # fmt: skip
        assert [r.seq for r in journal.pending()] == _by_fold(journal) == [1, 3, 4, 6, 7]
        assert journal.pending()[0].prepared_hash == journal.get(1).prepared_hash != ""


def test_a_damaged_journal_still_folds_everything(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        for counter in range(1, 4):
            _full(journal, counter)
        journal.settle({1: (RecordState.ACCEPTED, {"outcome": "accepted"})})
    with sqlite3.connect(tmp_path / "journal.db") as db:  # someone edits the sync entry
        db.execute("UPDATE entries SET body = '{}' WHERE kind = 'sync'")
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        assert not journal.report.intact
        pending = journal.pending()
        assert [r.seq for r in pending] == _by_fold(journal) == [1, 2, 3]
        assert all(r.damaged for r in pending if r.seq == 1)

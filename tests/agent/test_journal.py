"""The hash-chained journal: written before signing, completed after, damage detected."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.signing import LocalSigner
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData, card_message
from reader_agent.counter import OfflinePolicy, sync_with_retry
from reader_agent.errors import IssuerUnreachableError
from reader_agent.journal import Journal, JournalError, RecordState

TERMINAL = "term-1"


def _signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


CHIP, TERM = _signer(), _signer()


def _data(journal: Journal, *, card: str = "A12345678", amount: int = 100) -> TransactionData:
    return TransactionData(
        kind=Kind.BENEFIT, card=card, terminal=TERMINAL, seq=journal.next_seq(),
        at=int(datetime.now(UTC).timestamp()), amount_fen=amount, entitlement=uuid.uuid4(),
    )  # fmt: skip


def _full(journal: Journal, counter: int, **kw: object) -> int:
    data = _data(journal, **kw)  # type: ignore[arg-type]
    nonce = bytes(16)
    journal.prepare(mode="offline", nonce=nonce, data=data)
    raw = data.encode()
    record = SignedRecord.sign(nonce=nonce, data=raw, counter=counter,
                               card_signature=CHIP.sign(card_message(nonce, counter, raw)),
                               terminal=TERM)  # fmt: skip
    journal.complete(data.seq, record)
    return data.seq


def test_records_survive_reopen_and_torn_ones_are_voided(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        assert _full(journal, 1) == 1
        journal.prepare(mode="offline", nonce=bytes(16), data=_data(journal))  # card never signed
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        assert journal.report.intact
        states = [r.state for r in journal.records()]
        assert states == [RecordState.SIGNED, RecordState.VOID]
        assert journal.next_seq() == 3  # a torn sequence number is never reused
        assert [r.seq for r in journal.pending()] == [1, 2]
        record = journal.get(1)
        assert record.idempotency_key == journal.get(1).idempotency_key
        assert journal.offline_pending_total() == 100
        assert journal.offline_uses_since_online("A12345678") == 1


def test_wal_and_full_sync(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_an_edited_entry_is_detected_and_the_damaged_part_flagged(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        for counter in (1, 2, 3):
            _full(journal, counter)
    db = sqlite3.connect(tmp_path / "journal.db")
    db.execute("UPDATE entries SET body = replace(body, 'offline', 'online') WHERE idx = 2")
    db.commit()
    db.close()
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        assert not journal.report.intact
        assert journal.report.damaged_from == 2
        damaged = {r.seq: r.damaged for r in journal.records()}
        assert damaged == {1: False, 2: True, 3: True}
        with pytest.raises(JournalError) as refused:
            _full(journal, 4)
        assert refused.value.check == "damaged"


def test_a_truncated_journal_is_detected(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        for counter in (1, 2):
            _full(journal, counter)
    db = sqlite3.connect(tmp_path / "journal.db")
    db.execute("DELETE FROM entries WHERE idx >= 2")
    db.commit()
    db.close()
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        assert not journal.report.intact
        assert "truncated" in str(journal.report.reason)


def test_a_file_cut_short_is_detected(tmp_path: Path) -> None:
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        for counter in range(1, 40):
            _full(journal, counter)
        journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = tmp_path / "journal.db"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    try:
        journal = Journal(tmp_path, terminal_id=TERMINAL)
    except JournalError as exc:
        assert exc.check == "unreadable"
    else:
        assert not journal.report.intact
        journal.close()


def test_sync_retries_with_backoff() -> None:
    calls: list[float] = []

    def flaky() -> object:
        if len(calls) < 3:
            calls.append(0)
            raise IssuerUnreachableError("down")
        return "done"

    delays: list[float] = []
    assert sync_with_retry(flaky, attempts=5, sleep=delays.append) == "done"  # type: ignore[arg-type]
    assert len(delays) == 3 and delays[2] > delays[0]


def test_offline_policy_defaults_are_explicit() -> None:
    policy = OfflinePolicy()
    assert policy.floor_limit_fen > 0 and policy.max_offline_uses_per_card >= 1


class _Uploads:
    """The issuer's batch endpoint, recording what the counter sends."""

    def __init__(self) -> None:
        self.items: list[dict[str, object]] = []

    def upload_batch(self, items: list[dict[str, object]], *, certificate: str) -> list[object]:
        from reader_agent.issuer import BatchResult

        self.items.extend(items)
        return [BatchResult(seq=int(str(i["seq"])), outcome="accepted", reason=None,
                            answer={"outcome": "accepted"}) for i in items]  # fmt: skip


def test_the_clerk_stays_with_an_offline_record_and_goes_with_it_at_sync(tmp_path: Path) -> None:
    from reader_agent.counter import sync

    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        data = _data(journal)
        nonce = bytes(16)
        journal.prepare(mode="offline", nonce=nonce, data=data, clerk_id="oper-1a2b",
                        clerk_name="王芳", note={"benefit": "pension", "period": "2026-12",
                                                "holder": "李四"})  # fmt: skip
        raw = data.encode()
        journal.complete(data.seq, SignedRecord.sign(
            nonce=nonce, data=raw, counter=1,
            card_signature=CHIP.sign(card_message(nonce, 1, raw)), terminal=TERM))  # fmt: skip
        seq_without = _full(journal, 2)  # a record made with nobody signed in
    with Journal(tmp_path, terminal_id=TERMINAL) as journal:
        kept = journal.get(data.seq)
        assert (kept.clerk_id, kept.clerk_name) == ("oper-1a2b", "王芳")
        assert kept.note == {"benefit": "pension", "period": "2026-12", "holder": "李四"}
        assert journal.get(seq_without).clerk_id is None
        assert journal.verify().intact
        uploads = _Uploads()
        sync(journal, uploads, certificate="cert")  # type: ignore[arg-type]
    by_seq = {item["seq"]: item for item in uploads.items}
    assert by_seq[data.seq]["clerk_id"] == "oper-1a2b"
    assert "clerk_id" not in by_seq[seq_without]

"""The counter's store-and-forward journal: a hash-chained, fsync'd SQLite file.

Every transaction is an append-only series of **entries** (``prepare`` before the card is
asked to sign, ``complete`` with both signatures after, ``void`` for a record the card never
completed, ``sync`` with the issuer's answer). Each entry's hash covers the previous hash
and the entry's canonical JSON, so editing, deleting or reordering any entry breaks the
chain from there on. SQLite runs in WAL mode with ``synchronous=FULL``: an entry is on disk
when :meth:`Journal.prepare` returns, *before* the card sees SIGN TRANSACTION.

Truncation at the tail leaves a valid prefix, so the chain alone cannot show it: after every
commit the head (entry count and hash) is also written atomically to ``journal.head``
beside the database. At open (and before every sync) :meth:`Journal.verify` recomputes the
chain and compares it with the head; fewer entries than the head, a different hash, or a
database SQLite cannot read all mark the journal **damaged** from the first bad entry on.
Records wholly before that point upload normally; records from the damaged part are only
uploaded on request and then carry the ``journal-damaged`` flag, which the issuer holds for
review instead of paying. A damaged journal takes no new records.

Terminal sequence numbers are the journal's: ``seq`` n is the n-th record this terminal ever
prepared, never reused (a torn record is voided and reported, not recycled).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cardsvc.core.errors import CoreError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import b64url_decode, b64url_encode
from cardsvc.core.transaction import SignedRecord, TransactionData
from reader_agent.errors import AgentError

__all__ = ["ChainReport", "Journal", "JournalError", "JournalRecord", "RecordState"]

GENESIS = "0" * 64
DAMAGED_FLAG = "journal-damaged"


class JournalError(AgentError):
    """The journal cannot be used as asked; ``check`` names why."""

    code = "journal-error"

    def __init__(self, detail: str, *, check: str) -> None:
        super().__init__(detail)
        self.check = check


class RecordState(StrEnum):
    PREPARED = "prepared"  # written, the card not (yet) signed
    SIGNED = "signed"  # card and terminal signed: waiting for the issuer
    VOID = "void"  # torn: the card never completed it (nothing to pay)
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the issuer already had it (counts as accepted)
    CONFLICT = "conflict"  # held by the issuer for review, not paid
    REJECTED = "rejected"  # refused by the issuer (bad signature, unknown card...)


SETTLED = frozenset({RecordState.ACCEPTED, RecordState.DUPLICATE, RecordState.CONFLICT,
                     RecordState.REJECTED})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class JournalRecord:
    """One transaction as the journal knows it (folded from its entries)."""

    seq: int
    mode: str  # online | offline
    state: RecordState
    nonce: bytes
    data: bytes
    prepared_hash: str
    counter: int | None = None
    card_signature: bytes | None = None
    terminal_signature: bytes | None = None
    answer: Mapping[str, Any] | None = None
    void_reason: str | None = None
    #: The clerk signed in when the record was made (operator client id and name); sent
    #: beside the record (outside what the card signs) at submission and at sync.
    clerk_id: str | None = None
    clerk_name: str | None = None
    #: When the record was prepared (the journal's clock, UTC ISO 8601).
    prepared_at: str | None = None
    #: Receipt facts the page keeps for a reprint (benefit and period of an entitlement).
    note: Mapping[str, Any] | None = None
    #: The record's entries are (partly) in the damaged part of the journal.
    damaged: bool = False

    @property
    def transaction(self) -> TransactionData:
        return TransactionData.from_bytes(self.data)

    @property
    def idempotency_key(self) -> str:
        """Derived from the journal, so every retry of this record uses the same key."""
        return f"journal-{self.seq}-{self.prepared_hash[:32]}"

    def signed_record(self) -> SignedRecord:
        if self.counter is None or self.card_signature is None or self.terminal_signature is None:
            raise JournalError(f"record {self.seq} is not signed", check="not-signed")
        return SignedRecord(
            nonce=self.nonce,
            data=self.data,
            counter=self.counter,
            card_signature=self.card_signature,
            terminal_signature=self.terminal_signature,
        )


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """Result of :meth:`Journal.verify`: ``damaged_from`` is the first bad entry index."""

    entries: int
    head_entries: int
    damaged_from: int | None
    reason: str | None

    @property
    def intact(self) -> bool:
        return self.damaged_from is None


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(prev: str, index: int, kind: str, seq: int, body: Mapping[str, Any]) -> str:
    payload = _canonical({"i": index, "kind": kind, "seq": seq, "body": body})
    return hashlib.sha256(bytes.fromhex(prev) + payload).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_entries_seq ON entries (seq);
"""


#: A seq still to settle: signed or voided, and no issuer answer recorded yet.
_OPEN_SEQS = (
    " WHERE seq IN (SELECT seq FROM entries GROUP BY seq"
    " HAVING SUM(kind = 'sync') = 0 AND SUM(kind IN ('complete', 'void')) > 0)"
)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Journal:
    """The journal in ``directory`` (``journal.db`` and ``journal.head``).

    Opening verifies the chain (:attr:`report`) and voids records a crash left prepared but
    never signed. One process writes a journal at a time (the counter is one clerk).
    """

    def __init__(self, directory: Path, *, terminal_id: str) -> None:
        self.directory = directory
        self.terminal_id = terminal_id
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "journal.db"
        self.head_path = directory / "journal.head"
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"{self.path} is not a readable journal ({exc}): move it aside for review",
                check="unreadable",
            ) from None
        self.report = self.verify()
        if self.report.intact:
            self._void_torn()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- chain ----------------------------------------------------------------------------

    def _head(self) -> tuple[int, str]:
        try:
            obj = json.loads(self.head_path.read_bytes())
            return int(obj["entries"]), str(obj["hash"])
        except FileNotFoundError:
            return 0, GENESIS
        except (OSError, ValueError, KeyError, TypeError):
            return -1, ""

    def verify(self) -> ChainReport:
        """Recompute the chain and compare it with the head file; never raises for damage."""
        head_entries, head_hash = self._head()
        prev = GENESIS
        count = 0
        try:
            rows = self._db.execute(
                "SELECT idx, kind, seq, body, prev_hash, hash FROM entries ORDER BY idx"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            return ChainReport(entries=0, head_entries=head_entries, damaged_from=0,
                               reason=f"the database cannot be read: {exc}")  # fmt: skip
        for idx, kind, seq, body, stored_prev, stored_hash in rows:
            try:
                expected = entry_hash(prev, idx, kind, seq, json.loads(body))
            except (ValueError, TypeError):
                expected = ""
            if idx != count or stored_prev != prev or stored_hash != expected:
                return ChainReport(entries=len(rows), head_entries=head_entries,
                                   damaged_from=count,
                                   reason=f"entry {count} does not match the chain "
                                          "(edited, deleted or reordered)")  # fmt: skip
            prev = stored_hash
            count += 1
            if count == head_entries and prev != head_hash:
                return ChainReport(entries=len(rows), head_entries=head_entries,
                                   damaged_from=0,
                                   reason="the chain does not lead to the recorded head "
                                          "(rewritten)")  # fmt: skip
        if head_entries < 0:
            return ChainReport(entries=count, head_entries=head_entries, damaged_from=count,
                               reason="journal.head is damaged")  # fmt: skip
        if count < head_entries:
            return ChainReport(entries=count, head_entries=head_entries, damaged_from=count,
                               reason=f"the journal holds {count} entries but the head "
                                      f"recorded {head_entries}: truncated")  # fmt: skip
        return ChainReport(entries=count, head_entries=head_entries, damaged_from=None,
                           reason=None)  # fmt: skip

    def _require_intact(self) -> None:
        if not self.report.intact:
            raise JournalError(
                f"the journal is damaged ({self.report.reason}); it takes no new records: "
                "sync what is intact, then move it aside for review",
                check="damaged",
            )

    @contextmanager
    def _append(self) -> Iterator[list[tuple[str, int, Mapping[str, Any]]]]:
        pending: list[tuple[str, int, Mapping[str, Any]]] = []
        yield pending
        if not pending:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            last = self._db.execute(
                "SELECT idx, hash FROM entries ORDER BY idx DESC LIMIT 1"
            ).fetchone()
            idx, prev = (last[0] + 1, last[1]) if last else (0, GENESIS)
            for kind, seq, body in pending:
                digest = entry_hash(prev, idx, kind, seq, body)
                self._db.execute(
                    "INSERT INTO entries (idx, kind, seq, body, prev_hash, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (idx, kind, seq, _canonical(body).decode(), prev, digest),
                )
                prev, idx = digest, idx + 1
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        write_atomically(self.head_path, _canonical({"entries": idx, "hash": prev}))
        self.report = ChainReport(entries=idx, head_entries=idx, damaged_from=None, reason=None)

    # -- records --------------------------------------------------------------------------

    def next_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM entries").fetchone()
        return int(row[0] or 0) + 1

    def prepare(
        self, *, mode: str, nonce: bytes, data: TransactionData,
        clerk_id: str | None = None, clerk_name: str | None = None,
        note: Mapping[str, Any] | None = None,
    ) -> JournalRecord:  # fmt: skip
        """Write the record before the card signs it (on disk when this returns); the
        clerk and the receipt ``note`` go in the same entry (only when given, so entries
        of counters without clerks keep their shape)."""
        self._require_intact()
        if data.seq != self.next_seq() or data.terminal != self.terminal_id:
            raise JournalError("the record's terminal or sequence is not this journal's",
                               check="sequence")  # fmt: skip
        body: dict[str, Any] = {
            "mode": mode, "nonce": b64url_encode(nonce), "data": b64url_encode(data.encode()),
            "at": datetime.now(UTC).isoformat()}  # fmt: skip
        if clerk_id is not None:
            body["clerk_id"], body["clerk_name"] = clerk_id, clerk_name
        if note:
            body["note"] = dict(note)
        with self._append() as pending:
            pending.append(("prepare", data.seq, body))
        return self.get(data.seq)

    def complete(self, seq: int, record: SignedRecord) -> JournalRecord:
        """Add the card's and the terminal's signatures to a prepared record."""
        self._require_intact()
        current = self.get(seq)
        if current.state is not RecordState.PREPARED or current.data != record.data:
            raise JournalError(f"record {seq} is {current.state}, not prepared", check="state")
        with self._append() as pending:
            pending.append(("complete", seq, {
                "counter": record.counter,
                "card_signature": b64url_encode(record.card_signature),
                "terminal_signature": b64url_encode(record.terminal_signature)}))  # fmt: skip
        return self.get(seq)

    def void(self, seq: int, reason: str) -> None:
        self._require_intact()
        with self._append() as pending:
            pending.append(("void", seq, {"reason": reason[:200]}))

    def settle(self, answers: Mapping[int, tuple[RecordState, Mapping[str, Any]]]) -> None:
        """Record the issuer's answers (one entry each, one commit)."""
        if not answers:
            return
        with self._append() as pending:
            for seq, (state, answer) in sorted(answers.items()):
                pending.append(("sync", seq, {"state": state.value, "answer": dict(answer)}))

    def _void_torn(self) -> None:
        for record in self.records():
            if record.state is RecordState.PREPARED:
                self.void(record.seq, "the card did not complete the signature (interrupted)")

    def get(self, seq: int) -> JournalRecord:
        for record in self._fold(seq):
            return record
        raise JournalError(f"no record {seq}", check="unknown")

    def records(self) -> list[JournalRecord]:
        return list(self._fold(None))

    def _fold(self, only: int | None, *, open_only: bool = False) -> Iterator[JournalRecord]:
        damaged_from = self.report.damaged_from
        query = "SELECT idx, kind, seq, body, hash FROM entries"
        params: tuple[int, ...] = ()
        if only is not None:
            query += " WHERE seq = ?"
            params = (only,)
        elif open_only:
            query += _OPEN_SEQS
        fields: dict[int, dict[str, Any]] = {}
        try:
            rows = self._db.execute(query + " ORDER BY idx", params).fetchall()
        except sqlite3.DatabaseError:
            rows = []
        for idx, kind, seq, raw, digest in rows:
            try:
                body = json.loads(raw)
                if kind == "prepare":
                    fields[seq] = {"seq": seq, "mode": str(body["mode"]),
                                   "state": RecordState.PREPARED,
                                   "nonce": b64url_decode(body["nonce"], what="nonce"),
                                   "data": b64url_decode(body["data"], what="data"),
                                   "prepared_hash": str(digest), "damaged": False,
                                   "clerk_id": _opt_str(body.get("clerk_id")),
                                   "clerk_name": _opt_str(body.get("clerk_name")),
                                   "prepared_at": _opt_str(body.get("at")),
                                   "note": body["note"] if isinstance(body.get("note"), dict)
                                   else None}  # fmt: skip
                elif seq not in fields:
                    continue
                elif kind == "complete":
                    fields[seq].update(
                        state=RecordState.SIGNED,
                        counter=int(body["counter"]),
                        card_signature=b64url_decode(body["card_signature"], what="sig"),
                        terminal_signature=b64url_decode(body["terminal_signature"], what="sig"),
                    )
                elif kind == "void":
                    fields[seq].update(state=RecordState.VOID, void_reason=str(body["reason"]))
                elif kind == "sync":
                    fields[seq].update(state=RecordState(body["state"]), answer=body["answer"])
            except (ValueError, KeyError, TypeError, CoreError):
                if seq in fields:
                    fields[seq]["damaged"] = True
                continue
            if damaged_from is not None and idx >= damaged_from and seq in fields:
                fields[seq]["damaged"] = True
        for seq in sorted(fields):
            yield JournalRecord(**fields[seq])

    # -- views the counter rules and sync need --------------------------------------------

    def pending(self) -> list[JournalRecord]:
        """Signed records not yet settled with the issuer, and voids not yet reported."""
        waiting = (RecordState.SIGNED, RecordState.VOID)
        # An intact journal folds only the seqs without a sync entry (an index-backed
        # group-by), not its whole history; a damaged one folds everything, so entries
        # that no longer parse still mark their records damaged.
        candidates = self._fold(None, open_only=self.report.intact)
        return [r for r in candidates if r.state in waiting and r.answer is None]

    def offline_uses_since_online(self, card: str) -> int:
        """Offline records of ``card`` after its last online one in this journal."""
        count = 0
        for record in self.records():
            if record.state is RecordState.VOID:
                continue
            try:
                data = record.transaction
            except CoreError:
                continue
            if data.card != card:
                continue
            count = count + 1 if record.mode == "offline" else 0
        return count

    def offline_pending_total(self) -> int:
        """Fen of offline records the issuer has not settled yet."""
        total = 0
        for record in self.records():
            if record.mode == "offline" and record.state is RecordState.SIGNED:
                try:
                    total += record.transaction.amount_fen
                except CoreError:
                    continue
        return total

"""Journal records: a journal whose entries and head file the fuzzer wrote (damage, edits).

Entries carry fuzz bodies under the real kinds; mode 0 chains them correctly (as a journal
rewritten by someone who knows the format), mode 1 leaves the hashes and the head as the
fuzzer wrote them. The journal is opened and every view the counter and sync use is read.
Runs in /dev/shm so that SQLite's fsyncs cost nothing.
"""

import contextlib
import json
import sqlite3
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["cardsvc", "reader_agent", "fuzz"]):
    from cardsvc.core.errors import CoreError
    from fuzz.common import fuzz, json_value
    from reader_agent.errors import AgentError
    from reader_agent.journal import _SCHEMA, GENESIS, Journal, entry_hash

KINDS = ("prepare", "complete", "void", "sync", "other")
BODY_NAMES = ("mode", "nonce", "data", "counter", "card_signature", "terminal_signature",
              "reason", "state", "answer")  # fmt: skip
SHM = Path("/dev/shm")  # noqa: S108 - a private mkdtemp inside it
ROOT = Path(tempfile.mkdtemp(dir=SHM if SHM.is_dir() else None))


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    chained = fdp.ConsumeBool()
    directory = ROOT / "j"
    for name in ("journal.db", "journal.db-wal", "journal.db-shm", "journal.head"):
        (directory / name).unlink(missing_ok=True)
    directory.mkdir(exist_ok=True)
    db = sqlite3.connect(directory / "journal.db")
    db.executescript(_SCHEMA)
    prev, count = GENESIS, fdp.ConsumeIntInRange(0, 6)
    for idx in range(count):
        kind = KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)]
        seq = fdp.ConsumeIntInRange(1, 3)
        if fdp.ConsumeBool():  # JSON text: libFuzzer rarely mutates its way to it
            body = json.dumps({name: json_value(fdp) for name in BODY_NAMES if fdp.ConsumeBool()})
        else:
            body = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400))
        digest = fdp.ConsumeBytes(32).hex()
        if chained:
            with contextlib.suppress(ValueError, TypeError, RecursionError):
                digest = entry_hash(prev, idx, kind, seq, json.loads(body))
        db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                   (idx, kind, seq, body, prev, digest))  # fmt: skip
        prev = digest
    db.commit()
    db.close()
    head = {"entries": count, "hash": prev} if chained else fdp.ConsumeUnicodeNoSurrogates(80)
    (directory / "journal.head").write_text(json.dumps(head) if chained else head)
    with Journal(directory, terminal_id="t-1") as journal:
        for record in journal.records():
            _ = record.idempotency_key
            if record.state.value == "signed":
                record.signed_record()
            with contextlib.suppress(CoreError):
                record.transaction  # noqa: B018 - the property parses the record's data
        journal.pending()
        journal.offline_uses_since_online("A12345678")
        journal.offline_pending_total()


if __name__ == "__main__":
    fuzz(one_input, expected=(AgentError,))

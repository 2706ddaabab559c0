"""The issuer killed with SIGKILL in the middle of an offline sync: nothing lost, nothing
paid twice.

Real components: ``cardsvc serve`` as a subprocess on SQLite and the file key store (keys
and schema made by ``cardsvc keys init`` and ``cardsvc db upgrade``), ``reader-agent sync``
as a subprocess, and the agent's real hash-chained journal.

The records are made without a card reader: a software chip key (``FakeCard``) is
personalised through the issuer API, so the issuer holds its public key exactly as it holds
a real chip's, and each record is written to the journal with :meth:`Journal.prepare`
before that key signs (counter and all, as SIGN TRANSACTION does) and completed with the
card's and the terminal's signatures after, as :func:`reader_agent.counter.transact` does.

Where the kill lands is made deterministic by a small TCP proxy between the agent and the
issuer (the issuer's public URL is the proxy's, like a load balancer in front of it). On
the second batch upload it either

- ``answer-lost``: forwards the batch, reads the issuer's whole answer (so the batch is
  committed), then SIGKILLs the issuer and drops the connection: the agent never learns
  that 100 records were stored; or
- ``in-flight``: forwards the batch and SIGKILLs the issuer at once, while it processes it.

Then the issuer is restarted on the same database and keys, the agent syncs again, and:
one ledger row per journal record, no entitlement paid twice, and every journal record
settled as the issuer settled it (accepted, or conflict), none left pending.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from reader_agent.journal import Journal, RecordState
from tests.issuer.transaction_helpers import active_card, new_entitlement, terminal

RECORDS = 300  # three batches of the agent's 100
BATCH = 100
KILLED_BATCH = 2
DEADLINE = 30.0  # seconds any one wait may take before the test fails


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cardsvc() -> list[str]:
    script = Path(sys.executable).with_name("cardsvc")
    found = str(script) if script.exists() else shutil.which("cardsvc")
    assert found, "the cardsvc console script is not installed"
    return [found]


# -- the proxy that kills the issuer ---------------------------------------------------------


def _read_request(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 request (head and Content-Length body), as urllib sends it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class KillingProxy:
    """Forwards each connection (urllib sends one request, ``Connection: close``) to the
    issuer; on batch upload number ``at_batch`` it kills the issuer as ``mode`` says."""

    upstream: int
    mode: str
    at_batch: int
    kill: threading.Event = field(default_factory=threading.Event)  # set: kill the issuer now
    killed: threading.Event = field(default_factory=threading.Event)  # set by the test
    batches: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # An issuer that dies under a connection: the agent sees the connection dropped.
        with conn, contextlib.suppress(OSError):
            self._forward(conn)

    def _forward(self, conn: socket.socket) -> None:
        request = _read_request(conn)
        action = "pass"
        if request.startswith(b"POST /v1/transactions/batches "):
            with self._lock:
                self.batches += 1
                if self.batches == self.at_batch:
                    action = self.mode
        with socket.create_connection(("127.0.0.1", self.upstream), timeout=60) as upstream:
            upstream.sendall(request)
            if action == "in-flight":
                self._kill_and_wait()
                return
            answer = b""
            while chunk := upstream.recv(65536):
                answer += chunk
            if action == "answer-lost":
                self._kill_and_wait()
                return
            conn.sendall(answer)

    def _kill_and_wait(self) -> None:
        self.kill.set()
        assert self.killed.wait(DEADLINE), "the test did not kill the issuer"


# -- the issuer as a subprocess ----------------------------------------------------------------


@dataclass
class IssuerProcess:
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*_cardsvc(), "serve", "--port", str(self.port)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, f"issuer exited:\n{self.log.read_text()}"
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/health", timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"issuer did not start:\n{self.log.read_text()}"
            time.sleep(0.1)

    def sigkill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Site:
    issuer: IssuerProcess
    proxy: KillingProxy
    db: Path
    base: str  # the issuer's public URL (the proxy)


@pytest.fixture(params=["answer-lost", "in-flight"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    upstream = _free_port()
    proxy = KillingProxy(upstream=upstream, mode=request.param, at_batch=KILLED_BATCH)
    base = f"http://127.0.0.1:{proxy.port}"
    db = tmp_path / "issuer.db"
    env = {**os.environ, "CARDSVC_DATABASE_URL": f"sqlite:///{db}",
           "CARDSVC_KEY_DIR": str(tmp_path / "keys"), "CARDSVC_DEV_MODE": "1",
           "CARDSVC_ISSUER": base}  # fmt: skip
    for step in (["db", "upgrade"], ["keys", "init"]):
        done = subprocess.run([*_cardsvc(), *step], env=env, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    issuer = IssuerProcess(env=env, port=upstream, log=tmp_path / "issuer.log")
    try:
        yield Site(issuer=issuer, proxy=proxy, db=db, base=base)
    finally:
        issuer.stop()
        proxy.close()


# -- the test ------------------------------------------------------------------------------------


def _sync(site: Site, client_id: str, key: Path, state: Path, *, attempts: int) -> (
    subprocess.Popen[str]
):  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "reader_agent", "sync", "--client-id", client_id,
         "--client-key", str(key), "--issuer", site.base, "--state-dir", str(state),
         "--attempts", str(attempts)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(query).fetchall()


def _hex(value: str) -> str:
    return uuid.UUID(value).hex  # SQLAlchemy's Uuid type stores 32 hex digits on SQLite


def test_issuer_killed_mid_sync(site: Site, tmp_path: Path) -> None:
    # -- the issuer's side, set up in-process on the same SQLite file and key store --------
    settings = Settings(database_url=f"sqlite:///{site.db}", key_dir=tmp_path / "keys",
                        dev_mode=True, issuer=site.base)  # fmt: skip
    services = Services.from_settings(settings)
    client = TestClient(create_app(settings, services=services))
    card = active_card(client, services)  # a software chip key, personalised by the issuer
    counter = terminal(client, services)
    key = tmp_path / "terminal.pem"
    key.write_bytes(counter.signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip

    # -- the counter's offline journal: 300 records ---------------------------------------
    # Every 15th collects again the entitlement the record before it collected (a second
    # collection: must end as a conflict, not a payment); every 15th from 7 is a fee.
    state = tmp_path / "state"
    expected: dict[int, str] = {}  # seq -> the issuer's verdict: accepted | conflict
    entitlement_of: dict[int, str] = {}
    period = 0
    with Journal(state, terminal_id=counter.id) as journal:
        for seq in range(1, RECORDS + 1):
            entitlement: str | None
            if seq % 15 == 0:
                entitlement, verdict = entitlement_of[seq - 1], "conflict"
            elif seq % 15 == 7:
                entitlement, verdict = None, "accepted"
            else:
                period += 1
                year, month = divmod(period - 1, 12)
                entitlement = new_entitlement(client, services, card.person_id,
                                              period=f"{2001 + year}-{month + 1:02d}",
                                              amount=100_000 + seq)["id"]  # fmt: skip
                verdict = "accepted"
            if entitlement is not None:
                entitlement_of[seq] = entitlement
            expected[seq] = verdict
            nonce = secrets.token_bytes(16)
            data = TransactionData(
                kind=Kind.BENEFIT if entitlement else Kind.FEE, card=card.card_number,
                terminal=counter.id, seq=journal.next_seq(), at=int(utcnow().timestamp()),
                amount_fen=100_000 + (seq if seq % 15 else seq - 1),
                entitlement=uuid.UUID(entitlement) if entitlement else None,
                reference=None if entitlement else f"bill-{seq}",
            )  # fmt: skip
            journal.prepare(mode="offline", nonce=nonce, data=data)
            card_counter, card_signature = card.sign(nonce, data.encode())
            journal.complete(seq, SignedRecord.sign(
                nonce=nonce, data=data.encode(), counter=card_counter,
                card_signature=card_signature, terminal=counter.signer))  # fmt: skip
        assert len(journal.pending()) == RECORDS
    services.engine.dispose()
    entitlements = {e for s, e in entitlement_of.items() if s % 15 != 0}
    assert len(entitlements) == RECORDS - 2 * (RECORDS // 15)

    # -- sync; the proxy kills the issuer on the second batch --------------------------------
    site.issuer.start()
    first = _sync(site, counter.id, key, state, attempts=1)
    assert site.proxy.kill.wait(DEADLINE), "the agent never uploaded a second batch"
    site.issuer.sigkill()
    site.proxy.killed.set()
    out, err = first.communicate(timeout=DEADLINE)
    assert first.returncode != 0 and "unreachable" in err, (out, err)

    stored = _rows(site.db, "SELECT COUNT(*) FROM transactions")[0][0]
    assert isinstance(stored, int)
    # A batch commits all or nothing: the first is in; the second is in (its answer lost)
    # or not (killed while processing it); the third was never sent.
    if site.proxy.mode == "answer-lost":
        assert stored == KILLED_BATCH * BATCH
    else:
        assert stored in {(KILLED_BATCH - 1) * BATCH, KILLED_BATCH * BATCH}
    with Journal(state, terminal_id=counter.id) as journal:
        assert journal.report.intact
        assert len(journal.pending()) == RECORDS - (KILLED_BATCH - 1) * BATCH

    # -- the issuer restarted on the same files; the agent syncs again ----------------------
    site.issuer.start()
    second = _sync(site, counter.id, key, state, attempts=5)
    out, err = second.communicate(timeout=DEADLINE)
    assert second.returncode == 0, (out, err)
    assert out.startswith(f"uploaded {RECORDS - (KILLED_BATCH - 1) * BATCH}:"), out
    third = _sync(site, counter.id, key, state, attempts=1)
    out, err = third.communicate(timeout=DEADLINE)
    assert third.returncode == 0 and out.startswith("uploaded 0:"), (out, err)

    # -- the ledger: one row per record, nothing paid twice ------------------------------------
    rows = _rows(site.db, "SELECT terminal_seq, state, entitlement_id, conflict "
                          "FROM transactions")  # fmt: skip
    assert sorted(int(str(r[0])) for r in rows) == list(range(1, RECORDS + 1))
    verdicts = {int(str(seq)): str(st) for seq, st, _, _ in rows}
    assert verdicts == expected
    assert all(str(r[3]).startswith("entitlement:") for r in rows if r[1] == "conflict")
    paid = [str(r[2]) for r in rows if r[1] == "accepted" and r[2] is not None]
    assert len(paid) == len(set(paid)) == len(entitlements)
    assert set(paid) == {_hex(e) for e in entitlements}
    collected = _rows(site.db, "SELECT id, transaction_id FROM entitlements "
                               "WHERE state = 'collected'")  # fmt: skip
    assert len(collected) == len(entitlements)
    by_transaction = {str(r[0]): str(r[1]) for r in
                      _rows(site.db, "SELECT id, entitlement_id FROM transactions "
                                     "WHERE state = 'accepted'")}  # fmt: skip
    assert all(by_transaction[str(tid)] == str(eid) for eid, tid in collected)
    assert _rows(site.db, "SELECT COUNT(*) FROM transaction_holds")[0][0] == 0

    # -- the journal: every record settled, as the issuer settled it -------------------------
    with Journal(state, terminal_id=counter.id) as journal:
        assert journal.report.intact and journal.pending() == []
        settled = {r.seq: r.state for r in journal.records()}
    assert sorted(settled) == list(range(1, RECORDS + 1))
    for seq, verdict in expected.items():
        if verdict == "conflict":
            assert settled[seq] is RecordState.CONFLICT, (seq, settled[seq])
        else:
            assert settled[seq] in {RecordState.ACCEPTED, RecordState.DUPLICATE}, seq
    if site.proxy.mode == "answer-lost":  # the lost answers came back as duplicates
        lost = range(BATCH + 1, KILLED_BATCH * BATCH + 1)
        assert {settled[s] for s in lost if expected[s] == "accepted"} == {RecordState.DUPLICATE}

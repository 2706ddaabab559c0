"""Two offline counters and one card: the issuer pays once and flags the other for review.

Real components: the issuer under uvicorn (SQLite, file key store), pcscd with vpcd, the
card emulator as a subprocess, and ``reader-agent`` as a subprocess for every step. Two
terminals, each with its own key, certificate, journal and state directory, work offline
(their issuer URL refuses connections) and sync later.

- **The same card at two counters**: the emulator is stopped in slot 0 and its state file
  started in slot 1, so the card (and its counter) moves from counter A to counter B; both
  collect the same entitlement offline. The first upload is paid, the second is a conflict
  (``entitlement``: already collected).
- **A cloned card**: the emulator's state file is copied after personalisation and the
  copy runs in slot 1 beside the original in slot 0: the same chip key and the same
  counter. Both collect the same entitlement offline with counter 1; the second upload is
  a conflict for the reused counter (``counter-reused``: a clone), named before the
  entitlement is even looked at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.keys import public_jwk
from cardsvc.db.models import Entitlement, TransactionRow
from cardsvc.services import utcnow
from reader_agent.cli import app
from reader_agent.journal import Journal, JournalRecord, RecordState
from tests.agent.conftest import VIRTUAL_READERS
from tests.agent.test_issuer_pcscd import LiveIssuer, issuer
from tests.agent.world import emulator_process

__all__ = ["issuer"]

pytestmark = pytest.mark.pcscd

PIN = "123456"
OFFLINE = "http://127.0.0.1:9"  # discard port: connection refused
AMOUNT = 350_000


@dataclass
class Terminal:
    """One counter: its client, key, state directory (journal, certificate)."""

    issuer: LiveIssuer
    client_id: str
    key: Path
    state: Path
    cache: Path

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reader_agent", *argv], input=PIN + "\n", text=True,
            capture_output=True, env={**os.environ}, timeout=60, check=False,
        )  # fmt: skip

    def args(self, *, online: bool) -> list[str]:
        return ["--client-id", self.client_id, "--client-key", str(self.key),
                "--issuer", self.issuer.base if online else OFFLINE,
                "--state-dir", str(self.state)]  # fmt: skip

    def collect_offline(self, entitlement: str, slot: int) -> str:
        done = self.run("collect", "--entitlement", entitlement, "--amount-fen", str(AMOUNT),
                        "--reader", VIRTUAL_READERS[slot], "--cache-dir", str(self.cache),
                        *self.args(online=False))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "offline benefit seq 1" in done.stdout, done.stdout
        return done.stdout

    def sync(self) -> str:
        done = self.run("sync", *self.args(online=True), "--attempts", "1")
        assert done.returncode == 0, done.stderr
        return done.stdout

    def records(self) -> list[JournalRecord]:
        with Journal(self.state, terminal_id=self.client_id) as journal:
            assert journal.report.intact
            return journal.records()


@dataclass
class Counters:
    issuer: LiveIssuer
    a: Terminal
    b: Terminal
    card_state: Path
    card_number: str
    person_id: str

    def entitlement(self, period: str) -> str:
        token = issue_access_token(
            self.issuer.services.keys, issuer=self.issuer.services.settings.issuer,
            subject="test-admin", kind="operator",
            scopes=frozenset({"entitlements:write"}), now=utcnow(),
        )  # fmt: skip
        saved, self.issuer.admin_token = self.issuer.admin_token, token
        try:
            body = self.issuer.call("POST", f"/v1/persons/{self.person_id}/entitlements",
                                    {"benefit": "pension", "period": period,
                                     "amount_fen": AMOUNT})  # fmt: skip
        finally:
            self.issuer.admin_token = saved
        return str(body["id"])

    def ledger(self) -> list[tuple[str, str, str | None]]:
        """(terminal, state, conflict) of every stored transaction."""
        with Session(self.issuer.services.engine) as session:
            rows = session.execute(select(TransactionRow.terminal_id, TransactionRow.state,
                                          TransactionRow.conflict)).all()  # fmt: skip
        return sorted((str(t), str(s), c) for t, s, c in rows)

    def entitlement_state(self, entitlement: str) -> str:
        import uuid

        with Session(self.issuer.services.engine) as session:
            row = session.get(Entitlement, uuid.UUID(entitlement))
            assert row is not None
            return row.state


def _terminal(issuer: LiveIssuer, tmp_path: Path, name: str, cache: Path) -> Terminal:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / f"{name}.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    registered = issuer.services.clients.register(
        kind=ClientKind.TERMINAL, display_name=f"counter {name}",
        jwk=public_jwk(key.public_key()), created_by="test", now=utcnow(),
    )  # fmt: skip
    return Terminal(issuer=issuer, client_id=registered.client_id, key=key_file,
                    state=tmp_path / f"state-{name}", cache=cache)  # fmt: skip


@pytest.fixture
def counters(issuer: LiveIssuer, tmp_path: Path, pcscd: object) -> Iterator[Counters]:
    """A personalised card (its emulator state file, no emulator running), two terminals
    with their certificates fetched and a fresh offline cache."""
    card_state = tmp_path / "card.json"
    cache = tmp_path / "cache"
    a = _terminal(issuer, tmp_path, "A", cache)
    b = _terminal(issuer, tmp_path, "B", cache)
    person = issuer.call("POST", "/v1/persons",
                         {"citizen_id": "440524188001010014", "name": "李四"})  # fmt: skip
    card = issuer.call("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"})
    runner = CliRunner()
    with emulator_process(0, card_state):
        done = runner.invoke(app, [
            "personalize", "--reader", VIRTUAL_READERS[0], "--issuer", issuer.base,
            "--client-id", a.client_id, "--client-key", str(a.key),
            "--card-number", card["card_number"],
        ], input=f"{PIN}\n{PIN}\n87654321\n87654321\n")  # fmt: skip
        assert done.exit_code == 0, done.output
    root = tmp_path / "root.jwk"
    root.write_text(json.dumps(issuer.services.keys.root_key().jwk()))
    done = runner.invoke(app, ["cache", "update", "--issuer", issuer.base, "--root",
                               str(root), "--cache-dir", str(cache)])  # fmt: skip
    assert done.exit_code == 0, done.output
    for terminal in (a, b):  # online once: each fetches its terminal certificate
        assert terminal.sync().startswith("uploaded 0:")
    yield Counters(issuer=issuer, a=a, b=b, card_state=card_state,
                   card_number=card["card_number"], person_id=person["id"])  # fmt: skip


def _only(records: list[JournalRecord]) -> JournalRecord:
    assert len(records) == 1, records
    return records[0]


def test_the_same_card_at_two_offline_counters(counters: Counters) -> None:
    entitlement = counters.entitlement("2025-01")
    with emulator_process(0, counters.card_state):
        assert "counter 1" in counters.a.collect_offline(entitlement, slot=0)
    # The cardholder walks to the next counter: the card leaves slot 0 for slot 1.
    with emulator_process(1, counters.card_state):
        assert "counter 2" in counters.b.collect_offline(entitlement, slot=1)
    assert counters.ledger() == []  # nothing reached the issuer yet

    assert "1 accepted" in counters.a.sync()
    assert "1 conflict" in counters.b.sync()

    a, b = counters.a.client_id, counters.b.client_id
    ledger = counters.ledger()
    assert [(t, s) for t, s, _ in ledger] == sorted([(a, "accepted"), (b, "conflict")])
    conflict = next(c for t, s, c in ledger if s == "conflict")
    assert conflict is not None and conflict.startswith("entitlement:"), conflict
    assert counters.entitlement_state(entitlement) == "collected"  # once
    held = _only(counters.b.records())
    assert held.state is RecordState.CONFLICT and held.counter == 2
    assert held.answer is not None and held.answer["reason"] == "entitlement"
    assert _only(counters.a.records()).state is RecordState.ACCEPTED

    # Syncing again changes nothing; the clerk sees the conflict at counter B.
    assert counters.a.sync().startswith("uploaded 0:")
    assert counters.b.sync().startswith("uploaded 0:")
    assert len(counters.ledger()) == 2
    listing = counters.b.run("journal", "--client-id", b, "--state-dir",
                             str(counters.b.state), "--show", "conflicts")  # fmt: skip
    assert "conflict" in listing.stdout and "(entitlement)" in listing.stdout, listing.stdout


def test_a_cloned_card_at_another_offline_counter(counters: Counters) -> None:
    clone_state = counters.card_state.with_name("clone.json")
    shutil.copyfile(counters.card_state, clone_state)  # the same keys, the same counter
    entitlement = counters.entitlement("2025-02")
    with emulator_process(0, counters.card_state), emulator_process(1, clone_state):
        assert "counter 1" in counters.a.collect_offline(entitlement, slot=0)
        assert "counter 1" in counters.b.collect_offline(entitlement, slot=1)

    assert "1 accepted" in counters.a.sync()
    assert "1 conflict" in counters.b.sync()

    a, b = counters.a.client_id, counters.b.client_id
    ledger = counters.ledger()
    assert [(t, s) for t, s, _ in ledger] == sorted([(a, "accepted"), (b, "conflict")])
    conflict = next(c for t, s, c in ledger if s == "conflict")
    assert conflict is not None and conflict.startswith("counter-reused:"), conflict
    assert counters.entitlement_state(entitlement) == "collected"  # once
    held = _only(counters.b.records())
    assert held.state is RecordState.CONFLICT and held.counter == 1
    assert held.answer is not None and held.answer["reason"] == "counter-reused"
    assert _only(counters.a.records()).state is RecordState.ACCEPTED

    assert counters.b.sync().startswith("uploaded 0:")
    assert len(counters.ledger()) == 2
    listing = counters.b.run("journal", "--client-id", b, "--state-dir",
                             str(counters.b.state), "--show", "conflicts")  # fmt: skip
    assert "(counter-reused)" in listing.stdout, listing.stdout

"""Counter transactions end to end: issuer under uvicorn, pcscd, the emulator, the agent.

Reliability: the agent is run as a subprocess and killed with SIGKILL at a failpoint
(``READER_AGENT_CRASH_AT``) between the journal write and the card's signature, and between
the completed record and its upload; after a restart and a sync nothing is lost and
nothing is paid twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.keys import public_jwk
from cardsvc.db.models import Entitlement, TransactionRow
from cardsvc.services import utcnow
from reader_agent.cli import app
from reader_agent.journal import Journal, RecordState
from tests.agent.test_issuer_pcscd import LiveIssuer, issuer
from tests.agent.world import emulator_process

__all__ = ["issuer"]

pytestmark = pytest.mark.pcscd

READER = "Virtual PCD 00 00"
PIN = "123456"
OFFLINE = "http://127.0.0.1:9"  # discard port: connection refused


@dataclass
class Counter:
    issuer: LiveIssuer
    client_id: str
    key: Path
    state: Path
    cache: Path
    card_number: str
    person_id: str

    def args(self, *, online: bool = True) -> list[str]:
        return ["--client-id", self.client_id, "--client-key", str(self.key),
                "--issuer", self.issuer.base if online else OFFLINE,
                "--state-dir", str(self.state)]  # fmt: skip

    def entitlement(self, period: str, amount: int = 350_000) -> str:
        token = issue_access_token(
            self.issuer.services.keys, issuer=self.issuer.services.settings.issuer,
            subject="test-admin", kind="operator",
            scopes=frozenset({"entitlements:write"}), now=utcnow(),
        )  # fmt: skip
        saved = self.issuer.admin_token
        self.issuer.admin_token = token
        try:
            body = self.issuer.call("POST", f"/v1/persons/{self.person_id}/entitlements",
                                    {"benefit": "pension", "period": period,
                                     "amount_fen": amount})  # fmt: skip
        finally:
            self.issuer.admin_token = saved
        return str(body["id"])

    def collect_cmd(self, entitlement: str, *, online: bool = True) -> list[str]:
        return ["collect", "--entitlement", entitlement, "--amount-fen", "350000", "--reader",
                READER, "--cache-dir", str(self.cache), *self.args(online=online)]  # fmt: skip

    def run(self, argv: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ}
        if crash_at:
            env["READER_AGENT_CRASH_AT"] = crash_at
        return subprocess.run(
            [sys.executable, "-m", "reader_agent", *argv], input=PIN + "\n", text=True,
            capture_output=True, env=env, timeout=60, check=False,
        )  # fmt: skip

    def paid(self) -> tuple[int, int]:
        with Session(self.issuer.services.engine) as session:
            accepted = session.scalar(select(func.count()).select_from(TransactionRow).where(
                TransactionRow.state == "accepted")) or 0  # fmt: skip
            collected = session.scalar(select(func.count()).select_from(Entitlement).where(
                Entitlement.state == "collected")) or 0  # fmt: skip
        return int(accepted), int(collected)

    def journal(self) -> list[RecordState]:
        with Journal(self.state, terminal_id=self.client_id) as opened:
            return [r.state for r in opened.records()]


@pytest.fixture
def counter(issuer: LiveIssuer, tmp_path: Path, pcscd: object) -> Iterator[Counter]:
    with emulator_process(0, tmp_path / "card.json"):
        person = issuer.call("POST", "/v1/persons",
                             {"citizen_id": "440524188001010014", "name": "李四"})  # fmt: skip
        card = issuer.call("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"})
        key = ec.generate_private_key(ec.SECP256R1())
        key_file = tmp_path / "terminal.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        terminal = issuer.services.clients.register(
            kind=ClientKind.TERMINAL, display_name="counter 1",
            jwk=public_jwk(key.public_key()), created_by="test", now=utcnow(),
        )  # fmt: skip
        runner = CliRunner()
        done = runner.invoke(app, [
            "personalize", "--reader", READER, "--issuer", issuer.base,
            "--client-id", terminal.client_id, "--client-key", str(key_file),
            "--card-number", card["card_number"],
        ], input=f"{PIN}\n{PIN}\n87654321\n87654321\n")  # fmt: skip
        assert done.exit_code == 0, done.output
        root = tmp_path / "root.jwk"
        root.write_text(json.dumps(issuer.services.keys.root_key().jwk()))
        cache = tmp_path / "cache"
        done = runner.invoke(app, ["cache", "update", "--issuer", issuer.base, "--root",
                                   str(root), "--cache-dir", str(cache)])  # fmt: skip
        assert done.exit_code == 0, done.output
        yield Counter(issuer=issuer, client_id=terminal.client_id, key=key_file,
                      state=tmp_path / "state", cache=cache, card_number=card["card_number"],
                      person_id=person["id"])  # fmt: skip


def test_online_then_offline_then_sync(counter: Counter) -> None:
    first = counter.entitlement("2025-01")
    done = counter.run(counter.collect_cmd(first))
    assert done.returncode == 0, done.stderr
    assert "online benefit seq 1 counter 1" in done.stdout and "accepted" in done.stdout
    assert counter.paid() == (1, 1)
    # The same entitlement again, online: the issuer refuses it (already collected).
    again = counter.run(counter.collect_cmd(first))
    assert again.returncode != 0
    assert counter.paid() == (1, 1)

    second = counter.entitlement("2025-02")
    done = counter.run(counter.collect_cmd(second, online=False))
    assert done.returncode == 0, done.stderr
    assert "offline benefit" in done.stdout
    assert counter.paid() == (1, 1)
    sync = counter.run(["sync", *counter.args()])
    assert sync.returncode == 0, sync.stderr
    assert "1 accepted" in sync.stdout
    assert counter.paid() == (2, 2)
    sync = counter.run(["sync", *counter.args()])
    assert "uploaded 0" in sync.stdout
    listing = counter.run(["journal", "--client-id", counter.client_id,
                           "--state-dir", str(counter.state)])  # fmt: skip
    assert "chain: intact" in listing.stdout and listing.stdout.count("accepted") == 2


@pytest.mark.parametrize("crash_at", ["after-prepare", "after-card-signature"])
def test_killed_before_the_record_is_complete(counter: Counter, crash_at: str) -> None:
    entitlement = counter.entitlement("2025-03")
    counter.run(["sync", *counter.args()])  # fetches the terminal certificate once
    killed = counter.run(counter.collect_cmd(entitlement, online=False), crash_at=crash_at)
    assert killed.returncode == -signal.SIGKILL
    assert counter.journal() == [RecordState.VOID]  # found torn at restart, never paid
    sync = counter.run(["sync", *counter.args()])
    assert sync.returncode == 0, sync.stderr
    assert counter.paid() == (0, 0)
    done = counter.run(counter.collect_cmd(entitlement, online=False))
    assert done.returncode == 0, done.stderr
    assert "seq 2" in done.stdout
    counter.run(["sync", *counter.args()])
    counter.run(["sync", *counter.args()])
    assert counter.paid() == (1, 1)


def test_killed_between_signature_and_sync(counter: Counter) -> None:
    entitlement = counter.entitlement("2025-04")
    counter.run(["sync", *counter.args()])
    killed = counter.run(counter.collect_cmd(entitlement), crash_at="after-complete")
    assert killed.returncode == -signal.SIGKILL
    assert counter.journal() == [RecordState.SIGNED]
    assert counter.paid() == (0, 0)
    for _ in range(2):
        sync = counter.run(["sync", *counter.args()])
        assert sync.returncode == 0, sync.stderr
    assert counter.paid() == (1, 1)
    assert counter.journal() == [RecordState.ACCEPTED]


def test_an_edited_journal_is_held_back_at_sync(counter: Counter) -> None:
    import sqlite3

    counter.run(["sync", *counter.args()])
    entitlement = counter.entitlement("2025-05")
    done = counter.run(counter.collect_cmd(entitlement, online=False))
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(counter.state / "journal.db")
    db.execute("UPDATE entries SET body = replace(body, 'offline', 'online')")
    db.commit()
    db.close()
    listing = counter.run(["journal", "--client-id", counter.client_id,
                           "--state-dir", str(counter.state)])  # fmt: skip
    assert "DAMAGED" in listing.stdout
    sync = counter.run(["sync", *counter.args()])
    assert "JOURNAL DAMAGED" in sync.stderr and "1 held back" in sync.stdout
    assert counter.paid() == (0, 0)
    sync = counter.run(["sync", *counter.args(), "--include-damaged"])
    assert "1 conflict" in sync.stdout
    assert counter.paid() == (0, 0)  # held for review, not paid
    refused = counter.run(counter.collect_cmd(entitlement, online=False))
    assert refused.returncode != 0 and "damaged" in refused.stderr

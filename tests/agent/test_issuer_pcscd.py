"""The counter against a real issuer: personalise through the API as a terminal client,
then check the card offline with the trust list and status lists fetched from the issuer.

Real components throughout: the issuer app under uvicorn on a loopback port, SQLite, the
file key store, pcscd with vpcd, and the card emulator.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from cardsvc.api.app import create_app
from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.keys import public_jwk
from cardsvc.db.migrate import upgrade
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from reader_agent.cli import app
from tests.agent.world import emulator_process
from tests.live import free_port, serving

pytestmark = pytest.mark.pcscd

READER = "Virtual PCD 00 00"


@dataclass
class LiveIssuer:
    base: str
    services: Services
    admin_token: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.load(answer)


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[LiveIssuer]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="live issuer test",  # type: ignore[arg-type]
    )
    services = Services.from_settings(settings)
    services.keys.init(now=utcnow() - timedelta(hours=1))
    upgrade(services.engine)
    admin = issue_access_token(
        services.keys,
        issuer=settings.issuer,
        subject="test-admin",
        kind="operator",
        scopes=frozenset({"persons:read", "persons:write", "cards:read", "cards:write"}),
        now=utcnow(),
    )
    with serving(create_app(settings, services=services), port):
        yield LiveIssuer(base=settings.issuer, services=services, admin_token=admin)


@pytest.fixture
def blank_card(tmp_path: Path, pcscd: object) -> Iterator[Path]:
    with emulator_process(0, tmp_path / "card.json") as state:
        yield state


def test_personalise_through_the_issuer_then_check_and_revoke(
    issuer: LiveIssuer, blank_card: Path, tmp_path: Path
) -> None:
    # The issuing authority enrols a person and issues a card pending personalisation.
    person = issuer.call(
        "POST", "/v1/persons", {"citizen_id": "440524188001010014", "name": "李四"}
    )
    card = issuer.call("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"})
    assert card["state"] == "pending_personalization"

    # The counter terminal has its own key; only its public half is registered.
    terminal_key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "terminal.pem"
    key_file.write_bytes(
        terminal_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    terminal = issuer.services.clients.register(
        kind=ClientKind.TERMINAL,
        display_name="counter 1",
        jwk=public_jwk(terminal_key.public_key()),
        created_by="test",
        now=utcnow(),
    )

    runner = CliRunner()
    done = runner.invoke(app, [
        "personalize", "--reader", READER, "--issuer", issuer.base,
        "--client-id", terminal.client_id, "--client-key", str(key_file),
        "--card-number", card["card_number"],
    ], input="123456\n123456\n87654321\n87654321\n")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "personalised and locked" in done.output
    live = issuer.call("GET", f"/v1/cards/{card['card_number']}")
    assert live["state"] == "active" and live["personalized"]

    root = tmp_path / "root.jwk"
    root.write_text(json.dumps(issuer.services.keys.root_key().jwk()))
    cache = tmp_path / "cache"
    done = runner.invoke(
        app,
        [
            "cache",
            "update",
            "--issuer",
            issuer.base,
            "--root",
            str(root),
            "--cache-dir",
            str(cache),
        ],
    )
    assert done.exit_code == 0, done.output
    assert live["status"]["uri"] in done.output

    check = ["check", "--reader", READER, "--cache-dir", str(cache)]
    done = runner.invoke(app, check, input="123456\n")
    assert done.exit_code == 0, done.output
    assert "verdict: GENUINE" in done.output

    # Revoked at the issuer: the counter sees it after its next cache update.
    issuer.call(
        "POST",
        f"/v1/cards/{card['card_number']}/status-changes",
        {"action": "revoke", "reason": "test"},
    )
    done = runner.invoke(
        app, ["cache", "update", "--issuer", issuer.base, "--cache-dir", str(cache)]
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, check, input="123456\n")
    assert done.exit_code == 2
    assert "verdict: REVOKED" in done.output


def test_a_terminal_without_a_valid_key_cannot_personalise(
    issuer: LiveIssuer, blank_card: Path, tmp_path: Path
) -> None:
    person = issuer.call(
        "POST", "/v1/persons", {"citizen_id": "11010519491231002X", "name": "张三"}
    )
    card = issuer.call("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"})
    registered = ec.generate_private_key(ec.SECP256R1())
    terminal = issuer.services.clients.register(
        kind=ClientKind.TERMINAL,
        display_name="counter 2",
        jwk=public_jwk(registered.public_key()),
        created_by="test",
        now=utcnow(),
    )
    impostor = tmp_path / "impostor.pem"
    impostor.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    done = CliRunner().invoke(app, [
        "personalize", "--reader", READER, "--issuer", issuer.base,
        "--client-id", terminal.client_id, "--client-key", str(impostor),
        "--card-number", card["card_number"],
    ], input="123456\n123456\n87654321\n87654321\n")  # fmt: skip
    assert done.exit_code != 0
    assert "client authentication failed" in str(done.exception) + done.output
    # Nothing was written to the card: it is still blank.
    assert issuer.call("GET", f"/v1/cards/{card['card_number']}")["state"] == (
        "pending_personalization"
    )

"""The counter against a real issuer: personalise through the API as a terminal client,
then check the card offline with the trust list and status lists fetched from the issuer.

Real components throughout: the issuer app under uvicorn on a loopback port, SQLite, the
file key store, pcscd with vpcd, and the card emulator.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cardsvc.api.app import create_app
from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner, sign_jws
from cardsvc.db.migrate import upgrade
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from reader_agent.cli import app
from reader_agent.issuer import IssuerClient
from reader_agent.page.app import PageConfig
from reader_agent.page.app import create_app as create_page_app
from tests.agent.world import emulator_process
from tests.live import free_port, serving

pytestmark = pytest.mark.pcscd

READER = "Virtual PCD 00 00"
PIN = "123456"


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


@dataclass
class Counter:
    """A terminal registered at the issuer, holding its key in a file."""

    client_id: str
    key_file: Path


def _terminal(issuer: LiveIssuer, tmp_path: Path) -> Counter:
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
    return Counter(client_id=terminal.client_id, key_file=key_file)


def _personalised(
    issuer: LiveIssuer, counter: Counter, citizen_id: str, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Enrol, issue, personalise through the issuer onto the emulated card: (person, card)."""
    person = issuer.call("POST", "/v1/persons", {"citizen_id": citizen_id, "name": name})
    card = issuer.call("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"})
    assert card["state"] == "pending_personalization"
    done = CliRunner().invoke(app, [
        "personalize", "--reader", READER, "--issuer", issuer.base,
        "--client-id", counter.client_id, "--client-key", str(counter.key_file),
        "--card-number", card["card_number"],
    ], input=f"{PIN}\n{PIN}\n87654321\n87654321\n")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "personalised and locked" in done.output
    return person, card


def _pinned_cache(issuer: LiveIssuer, tmp_path: Path) -> tuple[Path, str]:
    """``reader-agent cache update --root``: the cache directory and what it printed."""
    root = tmp_path / "root.jwk"
    root.write_text(json.dumps(issuer.services.keys.root_key().jwk()))
    cache = tmp_path / "cache"
    done = CliRunner().invoke(app, ["cache", "update", "--issuer", issuer.base,
                                    "--root", str(root), "--cache-dir", str(cache)])  # fmt: skip
    assert done.exit_code == 0, done.output
    return cache, done.output


def test_personalise_through_the_issuer_then_check_and_revoke(
    issuer: LiveIssuer, blank_card: Path, tmp_path: Path
) -> None:
    counter = _terminal(issuer, tmp_path)
    _person, card = _personalised(issuer, counter, "440524188001010014", "李四")
    live = issuer.call("GET", f"/v1/cards/{card['card_number']}")
    assert live["state"] == "active" and live["personalized"]
    runner = CliRunner()

    cache, printed = _pinned_cache(issuer, tmp_path)
    assert "bundle version 1 (full" in printed and "trust list sequence" in printed

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
    assert "delta from 1" in done.output  # only what changed came down
    done = runner.invoke(app, check, input="123456\n")
    assert done.exit_code == 2
    assert "verdict: REVOKED" in done.output
    assert "status confirmed by the issuer" in done.output  # the age of the status it used


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


def _wallet_loss_report(issuer: LiveIssuer, person: dict[str, Any]) -> None:
    """What the holder does in the wallet: activate the e-card, then report the card lost."""
    code = issuer.call("POST", f"/v1/persons/{person['id']}/ecard-activation-codes")["code"]
    phone = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    device_jwk = public_jwk(phone.private_key.public_key())
    ecard = _public(issuer, "POST", "/v1/ecards/activations",
                    {"citizen_id": person["citizen_id"], "code": code, "device_jwk": device_jwk})
    path = f"/v1/ecards/{ecard['ecard_id']}/loss-report"
    nonce = _public(issuer, "GET", "/v1/ecards/nonce")["nonce"]
    proof = sign_jws(
        {"typ": "dpop+jwt", "jwk": device_jwk},
        {"htm": "POST", "htu": issuer.base + path, "iat": int(time.time()), "nonce": nonce,
         "jti": secrets.token_urlsafe(12)},
        phone,
    )  # fmt: skip
    answer = _public(issuer, "POST", path, {}, headers={"DPoP": proof})
    assert answer["card_status"] == "suspended"


def _public(
    issuer: LiveIssuer, method: str, path: str, body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        issuer.base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})}, method=method,
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.load(answer)


def test_an_online_counter_refuses_a_card_reported_lost_within_30_seconds(
    issuer: LiveIssuer, blank_card: Path, tmp_path: Path
) -> None:
    """The counter page with its issuer link running (default refresh settings): every
    check uses status at most 30 s old and says how old; after the holder reports the card
    lost in the wallet, the first check on status confirmed after the report refuses it."""
    counter = _terminal(issuer, tmp_path)
    person, card = _personalised(issuer, counter, "11010519491231002X", "王芳")
    cache, _printed = _pinned_cache(issuer, tmp_path)
    config = PageConfig(state_dir=tmp_path / "state", cache_dir=cache, port=PAGE_PORT,
                        csrf_token=CSRF, probe_every=1.0)  # fmt: skip
    client = IssuerClient(issuer.base, client_id=counter.client_id,
                          signer=_load_signer(counter.key_file))  # fmt: skip
    with TestClient(create_page_app(config, issuer=client),
                    base_url=f"http://127.0.0.1:{PAGE_PORT}") as page:  # fmt: skip
        _wait(lambda: page.get("/api/state").json()["link"]["online"] is True, "link online")
        _wait(lambda: page.get("/api/state").json()["card"]["present"], "card present")

        before = _check(page)
        assert before["verdict"] == "genuine", before
        assert "confirmed by the issuer" in before["status"]["reason"]
        assert before["status_age_seconds"] <= 30

        reported = datetime.now(UTC)
        _wallet_loss_report(issuer, person)
        refused = None
        for _ in range(30):  # bounded: the page's own 30 s rule must end this well before
            seen = _check(page)
            # Every check online uses status at most 30 s old, and says so.
            assert seen["status_age_seconds"] is not None and seen["status_age_seconds"] <= 30
            as_of = datetime.fromisoformat(seen["status_as_of"])
            if seen["verdict"] != "genuine":
                refused = seen
                break
            # Still genuine only on status from before the report (inside the 30 s).
            assert as_of <= reported, seen
            time.sleep(2)
        assert refused is not None and refused["verdict"] == "suspended", refused
        assert datetime.fromisoformat(refused["status_as_of"]) > reported
        assert "SUSPENDED" in refused["status"]["reason"]
        assert "confirmed by the issuer" in refused["status"]["reason"]
    assert issuer.call("GET", f"/v1/cards/{card['card_number']}")["state"] == "suspended"


PAGE_PORT = 8100
CSRF = "test-csrf-token"


def _check(page: TestClient) -> dict[str, Any]:
    answer = page.post("/api/check", content=b"{}", headers={
        "Content-Type": "application/json", "X-CSRF-Token": CSRF,
        "Origin": f"http://127.0.0.1:{PAGE_PORT}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    check: dict[str, Any] = answer.json()["check"]
    check["status"] = next(s for s in check["steps"] if s["step"] == "status")
    return check


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)


def _load_signer(key_file: Path) -> LocalSigner:
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return LocalSigner(private)

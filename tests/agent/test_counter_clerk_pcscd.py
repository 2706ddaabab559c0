"""The clerk's work with a card in the reader, over HTTP, end to end: the issuer under
uvicorn (SQLite), pcscd with vpcd and the emulated card, the counter page app under
uvicorn with its reader watcher and issuer link, a clerk enrolled with ``reader-agent
clerk add``.

A collection in the clerk's name (receipt with the clerk, benefit, hall and verification
code; the same after a reload and as a reprint; the code checks out at the issuer; the
audit event names the clerk), "Next customer" with a card that stays in the reader, and a
loss report then a resume that needs the card checked in the reader.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from cardsvc.api.app import create_app as create_issuer_app
from cardsvc.auth.clients import ClientKind
from cardsvc.core.keys import VerifyingKey, public_jwk
from cardsvc.core.pairing import activation_text, fingerprint
from cardsvc.core.signing import LocalSigner
from cardsvc.db.migrate import upgrade
from cardsvc.db.states import Role
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from reader_agent.cli import app as cli
from reader_agent.issuer import IssuerClient
from reader_agent.page.app import PageConfig
from reader_agent.page.app import create_app as create_page_app
from reader_agent.page.desk import DeskSettings
from reader_agent.page.server import PageServer
from reader_agent.page.views import Hall
from tests.agent.issuer_calls import operator_call
from tests.agent.world import emulator_process
from tests.live import free_port, serving

pytestmark = pytest.mark.pcscd

READER = "Virtual PCD 00 00"
PIN = "123456"
PASSWORD = "clerk password 7"
TOKEN = "clerk-pcscd-csrf"
HALL = Hall(name="朝阳区社会保险服务大厅", address="北京市朝阳区示例路1号")
WAIT = 25.0


@dataclass
class Counter:
    http: httpx.Client
    services: Services
    base: str
    clerk_id: str
    person_id: str
    card_number: str

    def admin(self, method: str, path: str, body: dict[str, Any] | None, *scopes: str) -> Any:
        return operator_call(self.services, self.base, method, path, body, *scopes)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(path, content=json.dumps({} if body is None else body).encode(),
                              headers={"Content-Type": "application/json", "X-CSRF-Token": TOKEN,
                                       "Origin": str(self.http.base_url).rstrip("/")})  # fmt: skip

    def sign_in(self) -> None:
        answer = self.post("/api/clerk/sign-in", {"client_id": self.clerk_id, "password": PASSWORD})
        assert answer.status_code == 200, answer.text

    def state(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/api/state").json()
        return body

    def wait_for(self, phase: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            state = self.state()
            if state["card"]["phase"] == phase:
                return state
            assert time.monotonic() < deadline, f"phase {phase!r} not reached: {state['card']}"
            time.sleep(0.1)

    def events(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.admin(
            "GET", f"/v1/cards/{self.card_number}/events", None, "cards:read")["items"]  # fmt: skip
        return items


@pytest.fixture
def counter(tmp_path: Path, pcscd: object) -> Iterator[Counter]:
    with running_counter(tmp_path) as world:
        yield world


@contextlib.contextmanager
def running_counter(tmp_path: Path, *, alg: str = "ES256") -> Iterator[Counter]:
    """The issuer, a personalised card, the counter page; ``alg`` for every key and the chip
    (tests/agent/test_sm2_counter_pcscd.py runs this module's tests on SM2SM3)."""
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}", database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys", key_passphrase="clerk pcscd",  # type: ignore[arg-type]
        signing_algorithm=alg,  # type: ignore[arg-type]
    )  # fmt: skip
    services = Services.from_settings(settings)
    upgrade(services.engine)  # first, so the key events reach the audit log
    services.keys.init(now=utcnow() - timedelta(hours=1))
    runner = CliRunner()
    with serving(create_issuer_app(settings, services=services), port), \
            emulator_process(0, tmp_path / "card.json"):  # fmt: skip
        world = Counter(http=httpx.Client(), services=services, base=settings.issuer,
                        clerk_id="", person_id="", card_number="")  # fmt: skip
        person = world.admin("POST", "/v1/persons",
                             {"citizen_id": "440524188001010014", "name": "李四"},
                             "persons:write")  # fmt: skip
        card = world.admin("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"},
                           "cards:write")  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        key_file = tmp_path / "terminal.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        terminal = services.clients.register(
            kind=ClientKind.TERMINAL, display_name="3号窗口",
            jwk=public_jwk(key.public_key()), created_by="test", now=utcnow(),
        )  # fmt: skip
        done = runner.invoke(cli, [
            "personalize", "--reader", READER, "--issuer", settings.issuer,
            "--client-id", terminal.client_id, "--client-key", str(key_file),
            "--card-number", card["card_number"], "--chip-alg", alg,
        ], input=f"{PIN}\n{PIN}\n87654321\n87654321\n")  # fmt: skip
        assert done.exit_code == 0, done.output
        root = tmp_path / "root.jwk"
        root.write_text(json.dumps(services.keys.root_key().jwk()))
        cache = tmp_path / "cache"
        done = runner.invoke(cli, ["cache", "update", "--issuer", settings.issuer, "--root",
                                   str(root), "--cache-dir", str(cache)])  # fmt: skip
        assert done.exit_code == 0, done.output
        clerk_key = ec.generate_private_key(ec.SECP256R1())
        clerk_file = tmp_path / "clerk.pem"
        clerk_file.write_bytes(clerk_key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))  # fmt: skip
        clerk = services.clients.register(
            kind=ClientKind.OPERATOR, display_name="王芳", role=Role.CLERK,
            jwk=public_jwk(clerk_key.public_key()), created_by="test", now=utcnow(),
        )  # fmt: skip
        state_dir = tmp_path / "state"
        done = runner.invoke(cli, ["clerk", "add", "--client-id", clerk.client_id, "--name",
                                   "王芳", "--key-file", str(clerk_file), "--state-dir",
                                   str(state_dir)], input=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
        assert done.exit_code == 0, done.output

        page_port = free_port()
        config = PageConfig(state_dir=state_dir, cache_dir=cache, port=page_port,
                            csrf_token=TOKEN, probe_every=0.5,
                            desk=DeskSettings(reader=READER, hall=HALL))  # fmt: skip
        client = IssuerClient(settings.issuer, client_id=terminal.client_id,
                              signer=LocalSigner(key))  # fmt: skip
        server = PageServer(create_page_app(config, issuer=client), host="127.0.0.1",
                            port=page_port)  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "page did not start"
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{page_port}", timeout=60) as http:
                world.http = http
                world.clerk_id, world.person_id = clerk.client_id, str(person["id"])
                world.card_number = card["card_number"]
                yield world
        finally:
            server.stop()
            thread.join(15)
    services.engine.dispose()


def test_a_collection_in_the_clerks_name_with_a_verifiable_receipt(counter: Counter) -> None:
    entitlement = counter.admin("POST", f"/v1/persons/{counter.person_id}/entitlements",
                                {"benefit": "pension", "period": "2026-12",
                                 "amount_fen": 350_000}, "entitlements:write")  # fmt: skip
    counter.sign_in()
    counter.wait_for("checked")
    listed = counter.http.get("/api/entitlements").json()["items"]
    assert [i["id"] for i in listed] == [entitlement["id"]]
    assert counter.post("/api/pin", {"pin": PIN}).status_code == 200
    collected = counter.post("/api/collect", {"entitlement_id": entitlement["id"],
                                              "amount_fen": 350_000})  # fmt: skip
    assert collected.status_code == 200, collected.text
    receipt = collected.json()["receipt"]
    assert (receipt["clerk_id"], receipt["clerk_name"]) == (counter.clerk_id, "王芳")
    assert (receipt["benefit"], receipt["period"]) == ("pension", "2026-12")
    assert receipt["hall"] == {"name": HALL.name, "address": HALL.address}
    assert receipt["name"] == "李四" and receipt["state"] == "accepted"
    assert len(receipt["code"]) == 14 and receipt["reprint"] is False
    # A reload shows the same receipt, benefit included.
    assert counter.state()["receipt"] == receipt
    # A reprint from the journal: the same, marked as a reprint.
    reprint = counter.http.get(f"/api/receipts/{receipt['seq']}").json()["receipt"]
    assert reprint == receipt | {"reprint": True}
    listing = counter.http.get("/api/receipts", params={"card_number": counter.card_number})
    assert [r["seq"] for r in listing.json()["items"]] == [receipt["seq"]]
    # The holder checks the code at the issuer: what the receipt says, nothing personal.
    with urllib.request.urlopen(f"{counter.base}/v1/receipts/{receipt['code']}",  # noqa: S310
                                timeout=10) as answer:  # fmt: skip
        checked = json.load(answer)
    assert (checked["kind"], checked["amount_fen"], checked["terminal"], checked["state"]) == (
        "benefit", 350_000, "3号窗口", "accepted")  # fmt: skip
    # The issuer's audit event of the transaction names the clerk.
    index = counter.services.audit.leaf_of(f"transaction:{receipt['transaction_id']}",
                                           "transaction.benefit")  # fmt: skip
    assert index is not None
    leaf = json.loads(counter.services.audit.leaf_data(index))
    assert leaf["data"]["clerk"] == counter.clerk_id

    # Next customer, with a card that stays in the reader: nothing of the last one lingers,
    # and a fresh check starts the next.
    done = counter.post("/api/done")
    assert done.status_code == 200
    state = done.json()
    assert (state["receipt"], state["notice"], state["check"]) == (None, None, None)
    assert state["card"] == {"present": True, "phase": "ended"}
    assert counter.post("/api/check").status_code == 200
    state = counter.wait_for("checked")
    assert state["receipt"] is None and state["check"]["genuine"] is True


def test_a_loss_report_then_a_resume_with_the_card_checked(counter: Counter) -> None:
    counter.sign_in()
    counter.wait_for("checked")
    lost = counter.post(f"/api/cards/{counter.card_number}/loss-report", {})
    assert lost.status_code == 200 and lost.json()["card"]["state"] == "suspended"
    # Another card than the one in the reader: refused, nothing changes.
    before = counter.events()
    other = counter.post("/api/cards/B00000000/resume")
    assert other.status_code == 409 and other.json()["type"].endswith("clerk-card-not-checked")
    assert counter.events() == before
    resumed = counter.post(f"/api/cards/{counter.card_number}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["card"]["state"] == "active" and resumed.json()["title"] == "已恢复使用"
    last = counter.events()[-1]
    assert (last["action"], last["to_state"], last["actor"]) == ("resume", "active",
                                                                 counter.clerk_id)  # fmt: skip
    # Signing out clears the page.
    out = counter.post("/api/clerk/sign-out").json()
    assert out["state"]["clerk"] is None and out["state"]["check"] is None


def test_an_ecard_activated_at_the_counter_with_the_chip_and_the_pin(counter: Counter) -> None:
    phone = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    counter.sign_in()
    counter.wait_for("checked")
    # Without the PIN: refused, nothing is bound.
    early = counter.post("/api/ecards/counter-activation", {"device_jwk": phone})
    assert early.status_code == 409 and early.json()["type"].endswith("pin-needed")
    # A private key is never sent on.
    secret = {**phone, "d": "A" * 43}
    leaked = counter.post("/api/ecards/counter-activation", {"device_jwk": secret})
    assert leaked.status_code == 422 and "A" * 43 not in leaked.text
    assert counter.post("/api/pin", {"pin": PIN}).status_code == 200
    done = counter.post("/api/ecards/counter-activation", {"device_jwk": phone})
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["ecard"]["card_number"] == counter.card_number
    assert body["ecard"]["holder_name"] == "李四" and body["ecard"]["ecard_status"] == "valid"
    assert body["credential"].count(".") == 2 and body["title"] == "电子社保卡已激活"
    assert body["device_fingerprint"] == fingerprint(phone)
    assert fingerprint(phone) in body["next"]
    # The chip answered once: the card was reset, a second activation needs the PIN again.
    again = counter.post("/api/ecards/counter-activation", {"device_jwk": phone})
    assert again.status_code == 409 and again.json()["type"].endswith("pin-needed")
    # The same phone's QR code scanned again, with the PIN: refused in words, nothing bound.
    assert counter.post("/api/pin", {"pin": PIN}).status_code == 200
    text = activation_text(VerifyingKey.from_jwk(phone))
    twice = counter.post("/api/ecards/counter-activation", {"text": text + "\n"})
    assert twice.status_code == 409 and twice.json()["type"].endswith("clerk-ecard-already-active")
    assert twice.json()["title"] == "这部手机已激活"
    # The binding is in the audit log in the clerk's name.
    index = counter.services.audit.leaf_of(f"ecard:{body['ecard']['ecard_id']}", "ecard.bound")
    assert index is not None, "no audit leaf for the activation"
    leaf = json.loads(counter.services.audit.leaf_data(index))
    assert leaf["actor"] == counter.clerk_id


def test_an_unreadable_activation_code_costs_the_holder_nothing(counter: Counter) -> None:
    other = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    counter.sign_in()
    counter.wait_for("checked")
    assert counter.post("/api/pin", {"pin": PIN}).status_code == 200
    for text in ("SSC1:6BFOXN%TS3DH", "SSCA1:" + "A" * 43 + "." + "A" * 43, "SSCA1:abc"):
        refused = counter.post("/api/ecards/counter-activation", {"text": text})
        assert refused.status_code == 422, refused.text
        assert refused.json()["type"].endswith("clerk-ecard-qr-invalid")
        assert refused.json()["title"] == "不是激活二维码"
    neither = counter.post("/api/ecards/counter-activation", {})
    assert neither.status_code == 422 and neither.json()["type"].endswith("clerk-ecard-qr-missing")
    # The PIN still stands: the next, good code activates at once.
    done = counter.post("/api/ecards/counter-activation",
                        {"text": activation_text(VerifyingKey.from_jwk(other))})  # fmt: skip
    assert done.status_code == 201, done.text
    assert done.json()["device_fingerprint"] == fingerprint(other)

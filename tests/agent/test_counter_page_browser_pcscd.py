"""The counter page in headless Chromium, end to end with real parts only.

Real components: the issuer app under uvicorn on a loopback port (SQLite, file key
store) that the tests stop and start again; pcscd with the vpcd driver and the card
emulator as a subprocess (``reader-agent emulate``), inserted and pulled by starting and
stopping it; the agent's counter page under uvicorn in a thread, with its reader watcher
and issuer link running; Debian's ``chromium`` driven by Playwright.

"Within a second" (insertion and removal shown live) is checked with bounded waits that
are generous on purpose (a loaded CI machine), never with a timing assertion: the page is
pushed the change over SSE by a watcher that wakes on pcscd's status change.

The clerk signs in first (a clerk and an auditor are enrolled with ``reader-agent clerk
add``); the clerk's whole job runs keyboard only, in both languages and both modes, with
axe-core on every state. ``CARDSVC_UPDATE_SCREENSHOTS=1`` also writes the screenshots to
``docs/screenshots/counter-*.png`` (the README shows them).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import wording
from cardsvc.api.app import create_app as create_issuer_app
from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.db.migrate import upgrade
from cardsvc.db.models import Entitlement, TransactionRow
from cardsvc.db.states import Role
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from reader_agent.cli import app as cli
from reader_agent.issuer import IssuerClient
from reader_agent.journal import Journal
from reader_agent.page.app import PageConfig
from reader_agent.page.app import create_app as create_page_app
from reader_agent.page.desk import DeskSettings
from reader_agent.page.server import PageServer
from reader_agent.page.views import Hall
from tests.agent.world import emulator_process
from tests.browser import browser_page, screenshot
from tests.latin import latin_words
from tests.live import free_port

pytestmark = [pytest.mark.pcscd, pytest.mark.browser]

READER = "Virtual PCD 00 00"
PIN = "123456"
WAIT_MS = 20_000
#: Insertion and removal reach the page "within a second"; bounded generously for CI.
LIVE_MS = 3_000


@contextmanager
def _uvicorn(app: Any, port: int) -> Iterator[None]:
    """The issuer under uvicorn in a thread (tests/live.py's, but on a port it may reuse)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning",
                                           timeout_graceful_shutdown=1))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"nothing started on port {port}")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def _page_server(app: Any, port: int) -> Iterator[None]:
    server = PageServer(app, host="127.0.0.1", port=port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the counter page did not start on port {port}")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.stop()
        thread.join(15)


@dataclass
class Issuer:
    """The issuer, on a fixed port, that a test can stop and start again."""

    port: int
    services: Services
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.stack.enter_context(
            _uvicorn(create_issuer_app(self.services.settings, services=self.services), self.port)
        )

    def stop(self) -> None:
        self.stack.close()
        self.stack = ExitStack()

    def call(self, method: str, path: str, body: dict[str, Any], *scopes: str) -> Any:
        import urllib.request

        token = issue_access_token(
            self.services.keys, issuer=self.services.settings.issuer, subject="test-admin",
            kind="operator", scopes=frozenset(scopes), now=utcnow(),
        )  # fmt: skip
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            self.base + path, data=json.dumps(body).encode(), method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.load(answer)

    def accepted(self, kind: str | None = None) -> int:
        with Session(self.services.engine) as session:
            query = select(func.count()).select_from(TransactionRow).where(
                TransactionRow.state == "accepted")  # fmt: skip
            if kind is not None:
                query = query.where(TransactionRow.kind == kind)
            return int(session.scalar(query) or 0)

    def entitlement_state(self, entitlement: str) -> str:
        import uuid

        with Session(self.services.engine) as session:
            row = session.get(Entitlement, uuid.UUID(entitlement))
            assert row is not None
            return row.state


@dataclass
class Counter:
    issuer: Issuer
    person_id: str
    card_state: Path
    client_id: str
    state_dir: Path
    url: str
    clerk_id: str
    auditor_id: str
    card_number: str
    card: ExitStack = field(default_factory=ExitStack)

    def insert(self) -> None:
        self.card.enter_context(emulator_process(0, self.card_state))

    def pull(self) -> None:
        """Stop the emulator: for pcscd the card is gone (as pulled out of the reader)."""
        self.card.close()
        self.card = ExitStack()

    def entitlement(self, period: str, amount_fen: int = 350_000) -> str:
        body = self.issuer.call("POST", f"/v1/persons/{self.person_id}/entitlements",
                                {"benefit": "pension", "period": period,
                                 "amount_fen": amount_fen}, "entitlements:write")  # fmt: skip
        return str(body["id"])

    def journal_states(self) -> list[str]:
        with Journal(self.state_dir, terminal_id=self.client_id) as journal:
            return [r.state.value for r in journal.records()]


@pytest.fixture
def counter(tmp_path: Path, pcscd: object) -> Iterator[Counter]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="counter page test",  # type: ignore[arg-type]
        status_shard_size=131_072,
        status_sync_interval_seconds=0.0,  # online verify sees a new e-card at once
    )
    services = Services.from_settings(settings)
    services.keys.init(now=utcnow() - timedelta(hours=1))
    upgrade(services.engine)
    issuer = Issuer(port=port, services=services)
    issuer.start()
    try:
        person = issuer.call("POST", "/v1/persons",
                             {"citizen_id": "440524188001010014", "name": "李四"},
                             "persons:write")  # fmt: skip
        card = issuer.call("POST", f"/v1/persons/{person['id']}/cards",
                           {"reason": "new card"}, "cards:write")  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        key_file = tmp_path / "terminal.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        terminal = services.clients.register(
            kind=ClientKind.TERMINAL, display_name="counter 7",
            jwk=public_jwk(key.public_key()), created_by="test", now=utcnow(),
        )  # fmt: skip
        card_state = tmp_path / "card.json"
        runner = CliRunner()
        with emulator_process(0, card_state):
            done = runner.invoke(cli, [
                "personalize", "--reader", READER, "--issuer", issuer.base,
                "--client-id", terminal.client_id, "--client-key", str(key_file),
                "--card-number", card["card_number"],
            ], input=f"{PIN}\n{PIN}\n87654321\n87654321\n")  # fmt: skip
            assert done.exit_code == 0, done.output
        root = tmp_path / "root.jwk"
        root.write_text(json.dumps(services.keys.root_key().jwk()))
        cache = tmp_path / "cache"
        done = runner.invoke(cli, ["cache", "update", "--issuer", issuer.base, "--root",
                                   str(root), "--cache-dir", str(cache)])  # fmt: skip
        assert done.exit_code == 0, done.output

        page_port = free_port()
        client = IssuerClient(issuer.base, client_id=terminal.client_id, signer=LocalSigner(key))
        clerk_id = _enrol(services, tmp_path, CLERK_NAME, Role.CLERK, CLERK_PASSWORD)
        auditor_id = _enrol(services, tmp_path, "赵审计", Role.AUDITOR, AUDITOR_PASSWORD)
        config = PageConfig(state_dir=tmp_path / "state", cache_dir=cache, port=page_port,
                            probe_every=0.5, terminal_name=TERMINAL_NAME,
                            desk=DeskSettings(hall=Hall(name=HALL_NAME,
                                                        address=HALL_ADDRESS)))  # fmt: skip
        counter = Counter(issuer=issuer, person_id=str(person["id"]), card_state=card_state,
                          client_id=terminal.client_id, state_dir=tmp_path / "state",
                          url=f"http://127.0.0.1:{page_port}/", clerk_id=clerk_id,
                          auditor_id=auditor_id, card_number=card["card_number"])  # fmt: skip
        with _page_server(create_page_app(config, issuer=client), page_port):
            try:
                yield counter
            finally:
                counter.pull()
    finally:
        issuer.stop()
        services.engine.dispose()


TERMINAL_NAME = "朝阳区社保服务大厅 3号窗口"
HALL_NAME = "北京市朝阳区社会保障服务大厅"
HALL_ADDRESS = "北京市朝阳区朝阳路 100 号"
CLERK_NAME = "李敏"
CLERK_PASSWORD = "counter clerk 42"
AUDITOR_PASSWORD = "auditor pass 42"


def _enrol(services: Services, tmp_path: Path, name: str, role: Role, password: str) -> str:
    """An operator client of ``role`` at the issuer, enrolled at this counter with
    ``reader-agent clerk add`` (as a hall's administrator does)."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / f"operator-{role.value}.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    client = services.clients.register(kind=ClientKind.OPERATOR, display_name=name, role=role,
                                       jwk=public_jwk(key.public_key()), created_by="test",
                                       now=utcnow())  # fmt: skip
    done = CliRunner().invoke(cli, ["clerk", "add", "--client-id", client.client_id,
                                    "--name", name, "--key-file", str(key_file),
                                    "--state-dir", str(tmp_path / "state")],
                              input=f"{password}\n{password}\n")  # fmt: skip
    assert done.exit_code == 0, done.output
    return client.client_id


def _sign_in(page: Any, counter: Counter, *, auditor: bool = False) -> None:
    """The clerk signs in with the keyboard only: the ID field has the focus."""
    from playwright.sync_api import expect

    page.wait_for_selector("#signin:not([hidden]), #work:not([hidden])", timeout=WAIT_MS)
    if page.locator("#work").is_visible():
        return  # signed in already (the page was opened again)
    expect(page.locator("#clerk-id")).to_be_focused()
    page.keyboard.type(counter.auditor_id if auditor else counter.clerk_id)
    page.keyboard.press("Tab")
    page.keyboard.type(AUDITOR_PASSWORD if auditor else CLERK_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#clerk-name")).to_contain_text("赵审计" if auditor else CLERK_NAME,
                                                        timeout=WAIT_MS)  # fmt: skip
    expect(page.locator("#work")).to_be_visible()


@pytest.fixture
def page() -> Iterator[Any]:
    """A clerk's browser asking for English (the flows below read English words)."""
    with browser_page(width=1100, height=820, locale="en-US") as opened:
        yield opened


#: What the clerk reads, per language; "switch" is a Chinese browser switched to English.
WORDS = {
    "zh-CN": {"locale": "zh-CN", "lang": "zh-CN", "tries": "还可尝试 3 次",
              "birth": "1880年1月1日", "confirm": "向 李四 发放养老金 2025年1月：¥3,500.00？",
              "mode": "在线", "state": "发卡机构已受理", "amount": "¥3,500.00",
              "for": "养老金 2025年1月", "time": r"^\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}$",
              "heading": "回执"},
    "en": {"locale": "en-US", "lang": "en", "tries": "3 tries left", "birth": "1880-01-01",
           "confirm": "Pay out Pension, January 2025: ¥3,500.00 to 李四?", "mode": "online",
           "state": "accepted by the issuer", "amount": "¥3,500.00",
           "for": "Pension, January 2025",
           "time": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} \(Beijing time\)$", "heading": "Receipt"},
}
WORDS["switch"] = {**WORDS["en"], "locale": "zh-CN", "switch": "to English"}


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    screenshot(page, tmp_path, f"counter-{name}")


def _checked(page: Any, counter: Counter, words: dict[str, str] = WORDS["en"]) -> None:
    """Open the page, insert the card: shown live, checked, the holder shown."""
    from playwright.sync_api import expect

    page.goto(counter.url)
    if words.get("switch"):  # a Chinese browser: the clerk switches to English
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        _press(page, "[data-lang-choice=en]")
        expect(page.locator("[data-lang-choice=en]")).to_have_attribute(
            "aria-pressed", "true", timeout=WAIT_MS)  # fmt: skip
    expect(page.locator("html")).to_have_attribute("lang", words["lang"])
    _sign_in(page, counter)
    card = page.locator("#card-state")
    expect(card).to_have_attribute("data-present", "false", timeout=WAIT_MS)
    expect(page.locator("#link")).to_have_attribute("data-online", "true", timeout=WAIT_MS)
    counter.insert()
    expect(card).to_have_attribute("data-present", "true", timeout=LIVE_MS)
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "genuine",
                                                       timeout=WAIT_MS)  # fmt: skip
    expect(page.locator("#id-name")).to_have_text("李四")
    expect(page.locator("#id-citizen-id")).to_have_text("440524********0014")
    expect(page.locator("#id-birth-date")).to_have_text(words["birth"])
    for step in ("read-document", "verify-document", "chip-authentication", "status"):
        expect(page.locator(f'#steps li[data-step="{step}"]')).to_have_attribute(
            "data-outcome", "passed")  # fmt: skip
    expect(page.locator("#pin-tries")).to_have_text(words["tries"])


def _pin(page: Any, pin: str = PIN) -> None:
    """The holder types the PIN: the focus is in its field after the check (and again after
    a wrong PIN), so typing and Enter are all it takes."""
    from playwright.sync_api import expect

    expect(page.locator("#pin")).to_be_focused(timeout=WAIT_MS)
    page.keyboard.type(pin)
    page.keyboard.press("Enter")
    if pin == PIN:
        expect(page.locator("#services")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#pin")).to_be_hidden()


@pytest.mark.parametrize("lang", list(WORDS))
def test_collect_a_benefit_online_with_a_printable_receipt(
    counter: Counter, tmp_path: Path, lang: str
) -> None:
    with browser_page(width=1100, height=820, locale=WORDS[lang]["locale"]) as page:
        _collect(page, counter, tmp_path, lang)


def _collect(page: Any, counter: Counter, tmp_path: Path, lang: str) -> None:
    from playwright.sync_api import expect

    words = WORDS[lang]
    entitlement = counter.entitlement("2025-01")
    _checked(page, counter, words)
    _screenshot(page, tmp_path, "check" if lang == "zh-CN" else f"check-{lang}")
    _pin(page)
    choice = page.locator('#entitlements input[type="radio"]')
    expect(choice).to_have_count(1, timeout=WAIT_MS)
    assert choice.get_attribute("data-id") == entitlement
    expect(choice).to_be_focused(timeout=WAIT_MS)
    page.keyboard.press("Enter")  # the chosen entitlement continues
    expect(page.locator("#confirm-text")).to_have_text(words["confirm"])
    assert counter.issuer.accepted() == 0  # nothing before the clerk confirms
    expect(page.locator("#confirm-button")).to_be_focused()
    page.keyboard.press("Enter")

    receipt = page.locator("#receipt")
    expect(receipt).to_be_visible(timeout=WAIT_MS)
    expect(receipt.locator("h2")).to_have_text(words["heading"])
    expect(page.locator("#receipt-mode")).to_have_text(words["mode"])
    expect(page.locator("#receipt-state")).to_have_text(words["state"])
    expect(page.locator("#receipt-amount")).to_have_text(words["amount"])
    expect(page.locator("#receipt-seq")).to_have_text("1")
    expect(page.locator("#receipt-counter")).to_have_text("1")
    expect(page.locator("#receipt-terminal")).to_have_text(TERMINAL_NAME)
    expect(page.locator("#receipt-for")).to_have_text(words["for"])
    # Beijing time, the same instant as the receipt's own UTC time.
    shown_at = page.locator("#receipt-time")
    expect(shown_at).to_have_text(re.compile(words["time"]))
    at = datetime.fromisoformat(shown_at.get_attribute("data-at") or "")
    assert wording.beijing(at, words["lang"]) == shown_at.text_content()
    expect(page.locator("#pending")).to_have_attribute("data-count", "0")
    # The card was reset after signing: another transaction needs the PIN again.
    expect(page.locator("#pin-form")).to_be_visible()
    _screenshot(page, tmp_path, "receipt" if lang == "zh-CN" else f"receipt-{lang}")
    # After a reload the receipt still names the benefit, in the same words.
    page.reload()
    expect(page.locator("#receipt-for")).to_have_text(words["for"], timeout=WAIT_MS)

    # Printed, only the receipt shows.
    page.emulate_media(media="print")
    expect(receipt).to_be_visible()
    expect(page.locator("#card-panel")).to_be_hidden()
    expect(page.locator("#print-button")).to_be_hidden()
    page.emulate_media(media="screen")

    assert counter.issuer.accepted("benefit") == 1
    assert counter.issuer.entitlement_state(entitlement) == "collected"
    assert counter.journal_states() == ["accepted"]


def test_a_card_pulled_mid_flow_is_shown_at_once_and_nothing_is_paid(
    page: Any, counter: Counter, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    entitlement = counter.entitlement("2025-02")
    page.goto(counter.url)
    _sign_in(page, counter)
    expect(page.locator("#link")).to_have_attribute("data-online", "true", timeout=WAIT_MS)
    expect(page.locator("#card-state")).to_contain_text("insert a card", timeout=WAIT_MS)
    _screenshot(page, tmp_path, "idle")

    _checked(page, counter)
    _pin(page)
    choice = page.locator('#entitlements input[type="radio"]')
    expect(choice).to_have_count(1, timeout=WAIT_MS)
    expect(choice).to_be_focused(timeout=WAIT_MS)
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_visible()

    counter.pull()  # at the confirmation step, before the clerk confirms
    expect(page.locator("#card-state")).to_have_attribute("data-present", "false",
                                                          timeout=LIVE_MS)  # fmt: skip
    message = page.locator("#message")
    expect(message).to_contain_text("taken out", timeout=LIVE_MS)
    expect(message).to_contain_text("Nothing was signed and nothing was paid")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#identity")).to_be_hidden()

    # Even a request sent anyway (a stale tab) is refused: there is no card to sign.
    answer = page.evaluate(
        """async (id) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch('/api/collect', {method: 'POST', headers: {
                'Content-Type': 'application/json', 'X-CSRF-Token': token},
                body: JSON.stringify({entitlement_id: id, amount_fen: 350000})});
            return {status: r.status, body: await r.json()};
        }""",
        entitlement,
    )
    assert answer["status"] == 409, answer
    assert counter.issuer.accepted() == 0
    assert counter.issuer.entitlement_state(entitlement) == "open"
    assert counter.journal_states() == []


def test_offline_collection_is_synced_once_the_issuer_is_back(
    page: Any, counter: Counter, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    entitlement = counter.entitlement("2025-03")
    _checked(page, counter)  # online first: the page fetched its terminal certificate
    counter.issuer.stop()
    link = page.locator("#link")
    expect(link).to_have_attribute("data-online", "false", timeout=WAIT_MS)
    expect(page.locator("#offline-banner")).to_contain_text("Offline")

    _pin(page)
    # The issuer cannot list entitlements now: the clerk types the one from the letter.
    expect(page.locator("#entitlements-note")).to_contain_text("cannot be reached",
                                                               timeout=WAIT_MS)  # fmt: skip
    expect(page.locator("#manual")).to_have_attribute("open", "")  # opened for the clerk
    _tab_to(page, "#entitlement-id")
    page.keyboard.type(entitlement)
    page.keyboard.press("Tab")
    page.keyboard.type("3500")
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-text")).to_contain_text("¥3,500.00")
    expect(page.locator("#confirm-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#receipt-mode")).to_have_text("offline")
    expect(page.locator("#receipt-state")).to_contain_text("to be uploaded")
    expect(page.locator("#pending")).to_have_attribute("data-count", "1", timeout=WAIT_MS)
    expect(page.locator("#offline-banner")).to_contain_text("1 waiting")
    _screenshot(page, tmp_path, "offline")
    assert counter.issuer.accepted() == 0

    counter.issuer.start()
    expect(link).to_have_attribute("data-online", "true", timeout=WAIT_MS)
    expect(page.locator("#pending")).to_have_attribute("data-count", "0", timeout=WAIT_MS)
    expect(page.locator("#conflicts")).to_have_attribute("data-count", "0")
    expect(page.locator("#offline-banner")).to_be_hidden()
    assert counter.issuer.accepted("benefit") == 1
    assert counter.issuer.entitlement_state(entitlement) == "collected"
    assert counter.journal_states() == ["accepted"]


def test_fee_payment_after_a_wrong_pin(page: Any, counter: Counter) -> None:
    from playwright.sync_api import expect

    _checked(page, counter)
    _pin(page, "000000")
    message = page.locator("#message")
    expect(message).to_contain_text("The PIN was not right", timeout=WAIT_MS)
    expect(message).to_contain_text("2 tries left")
    expect(page.locator("#pin-tries")).to_have_text("2 tries left")
    _pin(page)

    expect(page.locator("#collect-button")).to_be_focused(timeout=WAIT_MS)  # nothing open
    _tab_to(page, "#tab-collect")
    page.keyboard.press("ArrowRight")  # the tabs move by the arrow keys
    expect(page.locator("#tab-pay")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("25.50")
    page.keyboard.press("Tab")
    page.keyboard.type("BILL-2025-0042")
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-text")).to_contain_text("¥25.50 for bill BILL-2025-0042")
    expect(page.locator("#confirm-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#receipt-kind")).to_have_text("Fee paid")
    expect(page.locator("#receipt-amount")).to_have_text("¥25.50")
    expect(page.locator("#receipt-mode")).to_have_text("online")
    expect(page.locator("#receipt-state")).to_have_text("accepted by the issuer")
    assert counter.issuer.accepted("fee") == 1


def test_an_e_card_qr_code_is_verified_online_and_plainly_not_when_offline(
    page: Any, counter: Counter
) -> None:
    from fastapi.testclient import TestClient
    from playwright.sync_api import expect

    from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint

    services = counter.issuer.services
    client = TestClient(create_issuer_app(services.settings, services=services))
    holder = active_holder(client, services, name="王小明")
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    minted = mint(client, services, ecard["ecard_id"], phone, purpose="identity")
    assert minted.status_code == 200, minted.text
    token = minted.json()["tokens"][0]["token"]

    page.goto(counter.url)
    _sign_in(page, counter)
    expect(page.locator("#link")).to_have_attribute("data-online", "true", timeout=WAIT_MS)
    result = page.locator("#qr-result")

    def scan(text: str) -> None:  # a scanner types the text and ends with Enter
        _tab_to(page, "#qr-text")  # the field keeps the focus after each code
        expect(page.locator("#qr-text")).to_have_value("")
        page.keyboard.type(text)
        page.keyboard.press("Enter")

    scan(token)
    expect(result).to_have_attribute("data-outcome", "valid", timeout=WAIT_MS)
    expect(page.locator("#qr-message")).to_contain_text("VALID e-card for Identity")
    scan(token)  # one-time use: the same code again is refused
    expect(result).to_have_attribute("data-outcome", "invalid", timeout=WAIT_MS)
    expect(page.locator("#qr-message")).to_contain_text("already used")

    second = mint(client, services, ecard["ecard_id"], phone, purpose="identity")
    assert second.status_code == 200, second.text
    counter.issuer.stop()
    scan(second.json()["tokens"][0]["token"])
    expect(result).to_have_attribute("data-outcome", "unverified", timeout=WAIT_MS)
    expect(page.locator("#qr-message")).to_contain_text("NOT VERIFIED")


# -- the clerk's whole job, keyboard only, both languages, both modes ---------------------

#: What the clerk reads in each language (the flows below are typed, never clicked).
JOB = {
    "zh-CN": {"locale": "zh-CN", "active": "卡号 {card}：正常",
              "suspended": "卡号 {card}：已临时挂失（暂停使用）", "pension": "养老金 2025年4月",
              "resumed": "已恢复使用", "pin-wrong": "还可尝试 2 次", "clerk": "柜员：李敏",
              "reprint": "补打回执", "forbidden": "无权办理", "mode": "关怀模式（大字）",
              "time": r"^\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}$"},
    "en": {"locale": "en-US", "active": "Card {card}: in use",
           "suspended": "Card {card}: suspended (temporary loss)",
           "pension": "Pension, April 2025", "resumed": "Card resumed", "pin-wrong": "2 tries left",
           "clerk": "Clerk: 李敏", "reprint": "Reprint", "forbidden": "Not allowed for your role",
           "mode": "Easy view (large text)",
           "time": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} \(Beijing time\)$"},
}
CITIZEN_ID = "440524188001010014"


def _tab_to(page: Any, selector: str, *, limit: int = 150) -> None:
    """Tab (forwards, wrapping) until ``selector`` has the focus: keyboard only."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)",
                         selector):  # fmt: skip
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def _press(page: Any, selector: str) -> None:
    _tab_to(page, selector)
    page.keyboard.press("Enter")


def _accessible(page: Any, state: str, mode: str) -> None:
    from tests.axe import assert_accessible

    # Checked as it stays, after any appearing animation.
    page.evaluate("() => Promise.all(document.getAnimations().map((a) => a.finished))")
    # The mode for the elderly keeps 7:1 (AAA); the normal one at least 4.5:1 (AA).
    assert_accessible(page, state, enhanced_contrast=mode == "care")
    # Every visible control has an accessible name.
    unnamed = page.evaluate("""() => [...document.querySelectorAll(
        'button, input, select, summary, [role=tab]')].filter((el) => el.offsetParent !== null
        || el.closest('dialog[open]')).filter((el) => {
          const label = el.labels && el.labels.length ? el.labels[0].textContent.trim() : '';
          return !(el.getAttribute('aria-label') || label || el.textContent.trim()
                   || el.title || el.getAttribute('aria-labelledby'));
        }).map((el) => el.id || el.outerHTML.slice(0, 60))""")
    assert unnamed == [], f"{state}: controls without a name: {unnamed}"


def _sizes(page: Any, mode: str) -> None:
    """Body text 18 px (24 px in the mode); every visible target at least 44 px (48)."""
    body = page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")
    assert body == (24 if mode == "care" else 18), body
    least = 48 if mode == "care" else 44
    small = page.evaluate("""(least) => [...document.querySelectorAll(
        'button, input:not([type=radio]):not([type=checkbox]), select')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => el.getBoundingClientRect().height < least - 0.5)
        .map((el) => `${el.id}:${el.getBoundingClientRect().height}`)""", least)
    assert small == [], small


@pytest.mark.parametrize("mode", ["standard", "care"])
@pytest.mark.parametrize("lang", list(JOB))
def test_the_clerks_whole_job_by_keyboard(
    counter: Counter, tmp_path: Path, lang: str, mode: str
) -> None:
    import urllib.request

    from playwright.sync_api import expect

    words = JOB[lang]
    card_line = {k: words[k].format(card=counter.card_number) for k in ("active", "suspended")}
    entitlement = counter.entitlement("2025-04")
    shot = f"{'' if lang == 'zh-CN' else lang + '-'}{'care-' if mode == 'care' else ''}"
    with browser_page(width=1280, height=900, locale=words["locale"]) as page:
        page.goto(counter.url)
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.locator("html")).to_have_attribute("data-mode", "standard")
        if mode == "care":  # switched with the keyboard, and remembered
            _press(page, "#mode-switch")
            expect(page.locator("html")).to_have_attribute("data-mode", "care")
            expect(page.locator("#mode-switch")).to_have_attribute("aria-pressed", "true")
            page.reload()
            expect(page.locator("html")).to_have_attribute("data-mode", "care")
        expect(page.locator("#mode-switch")).to_have_text(words["mode"])
        expect(page.locator("#clerk-id")).to_be_focused(timeout=WAIT_MS)
        expect(page.locator("#work")).to_be_hidden()
        _accessible(page, "sign-in", mode)
        _sizes(page, mode)
        if lang == "zh-CN":
            _screenshot(page, tmp_path, f"{shot}signin")

        # A wrong password: refused, the focus back in the password field.
        page.keyboard.type(counter.clerk_id)
        page.keyboard.press("Tab")
        page.keyboard.type("not the password")
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#clerk-password")).to_be_focused()
        expect(page.locator("#clerk-password")).to_have_value("")
        _accessible(page, "wrong password", mode)
        page.keyboard.type(CLERK_PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("#clerk-name")).to_have_text(words["clerk"], timeout=WAIT_MS)
        expect(page.locator("#lookup-id")).to_be_focused()

        # Look the person up by ID number: card, e-card, open entitlements.
        page.keyboard.type(CITIZEN_ID)
        page.keyboard.press("Enter")
        cards = page.locator("#person-cards li")
        expect(cards.locator(".what")).to_have_text(card_line["active"], timeout=WAIT_MS)
        expect(page.locator("#person-entitlements .what")).to_have_text(words["pension"])
        expect(page.locator("#person-entitlements .amount")).to_have_text("¥3,500.00")
        expect(page.locator("#person-citizen-id")).to_have_text("440524********0014")
        assert CITIZEN_ID not in page.locator("#person").inner_text()
        expect(page.locator("#lookup-id")).to_have_value("")  # not left on the screen
        _accessible(page, "person", mode)
        _sizes(page, mode)

        # A temporary loss report, confirmed in the page: first cancelled (Escape).
        _press(page, f'#person-cards li[data-card="{counter.card_number}"] button:not(.danger)')
        dialog = page.locator("#dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#dialog-no")).to_be_focused()
        _accessible(page, "loss dialog", mode)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(cards.locator(".what")).to_have_text(card_line["active"])
        page.keyboard.press("Enter")  # the focus is back on the button
        expect(dialog).to_be_visible()
        page.keyboard.press("Tab")
        expect(page.locator("#dialog-yes")).to_be_focused()
        page.keyboard.press("Enter")
        expect(cards.locator(".what")).to_have_text(card_line["suspended"], timeout=WAIT_MS)
        expect(page.locator("#message")).to_have_class(re.compile("info"))

        # The card in the reader, checked; then resumed (the check proves the card).
        counter.insert()
        expect(page.locator("#card-state")).to_have_attribute("data-present", "true",
                                                              timeout=LIVE_MS)  # fmt: skip
        expect(page.locator("#check")).to_be_visible(timeout=WAIT_MS)
        _press(page, f'#person-cards li[data-card="{counter.card_number}"] button:not(.danger)')
        expect(page.locator("#message")).to_contain_text(words["resumed"], timeout=WAIT_MS)
        expect(cards.locator(".what")).to_have_text(card_line["active"], timeout=WAIT_MS)

        # Check again: genuine; the focus moves to the PIN field.
        _press(page, "#recheck-button")
        expect(page.locator("#verdict")).to_have_attribute("data-verdict", "genuine",
                                                           timeout=WAIT_MS)  # fmt: skip
        expect(page.locator("#pin")).to_be_focused(timeout=WAIT_MS)
        _accessible(page, "card checked", mode)
        _sizes(page, mode)
        if lang == "zh-CN":
            _screenshot(page, tmp_path, f"{shot}job-check")
        page.keyboard.type("000000")  # a wrong PIN: said, and the focus back in the field
        page.keyboard.press("Enter")
        expect(page.locator("#pin-tries")).to_have_text(words["pin-wrong"], timeout=WAIT_MS)
        expect(page.locator("#pin")).to_be_focused()
        _accessible(page, "wrong PIN", mode)
        page.keyboard.type(PIN)
        page.keyboard.press("Enter")
        choice = page.locator('#entitlements input[type="radio"]')
        expect(choice).to_have_count(1, timeout=WAIT_MS)
        assert choice.get_attribute("data-id") == entitlement
        expect(choice).to_be_focused(timeout=WAIT_MS)
        _accessible(page, "services", mode)
        page.keyboard.press("Enter")
        expect(page.locator("#confirm-button")).to_be_focused(timeout=WAIT_MS)
        _accessible(page, "confirm", mode)
        page.keyboard.press("Enter")

        # The receipt: hall, clerk, benefit by name, terminal, Beijing time, ¥, the code.
        receipt = page.locator("#receipt")
        expect(receipt).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#print-button")).to_be_focused()
        expect(page.locator("#receipt-hall")).to_have_text(HALL_NAME)
        expect(page.locator("#receipt-hall-address")).to_have_text(HALL_ADDRESS)
        expect(page.locator("#receipt-clerk")).to_have_text(CLERK_NAME)
        expect(page.locator("#receipt-for")).to_have_text(words["pension"])
        expect(page.locator("#receipt-terminal")).to_have_text(TERMINAL_NAME)
        expect(page.locator("#receipt-amount")).to_have_text("¥3,500.00")
        expect(page.locator("#receipt-time")).to_have_text(re.compile(words["time"]))
        expect(page.locator("#receipt-reprint")).to_be_hidden()
        code = page.locator("#receipt-code").text_content() or ""
        assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code), code
        _accessible(page, "receipt", mode)
        _sizes(page, mode)
        if lang == "zh-CN":
            _screenshot(page, tmp_path, f"{shot}job-receipt")
        # Anyone checks the code at the issuer: the same payment.
        with urllib.request.urlopen(f"{counter.issuer.base}/v1/receipts/{code}",  # noqa: S310
                                    timeout=10) as answer:  # fmt: skip
            checked = json.load(answer)
        assert (checked["kind"], checked["amount_fen"], checked["state"]) == (
            "benefit", 350_000, "accepted")  # fmt: skip
        assert counter.issuer.entitlement_state(entitlement) == "collected"

        # An e-card activation code, shown large, once.
        _press(page, "#code-button")
        shown = page.locator("#code")
        expect(shown).to_have_text(re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$"),
                                   timeout=WAIT_MS)  # fmt: skip
        expect(shown).to_be_focused()
        _accessible(page, "activation code", mode)
        _press(page, "#code-hide")
        expect(page.locator("#code-box")).to_be_hidden()
        expect(shown).to_have_text("")

        # Reprint from the journal: the same receipt, marked as a reprint.
        _press(page, "#receipts-button")
        rows = page.locator("#receipts-list li")
        expect(rows).to_have_count(1, timeout=WAIT_MS)
        expect(page.locator("#receipts-list button")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#receipt-reprint")).to_have_text(words["reprint"], timeout=WAIT_MS)
        expect(page.locator("#receipt-code")).to_have_text(code)
        expect(page.locator("#receipt-clerk")).to_have_text(CLERK_NAME)
        expect(page.locator("#receipt-for")).to_have_text(words["pension"])
        _accessible(page, "reprint", mode)

        # Next customer: nothing of this one lingers; the card stays in the (virtual)
        # reader, so the next check is one key away.
        _press(page, "#next-customer-button")
        expect(receipt).to_be_hidden(timeout=WAIT_MS)
        expect(page.locator("#person")).to_be_hidden()
        expect(page.locator("#message")).to_be_hidden()
        expect(page.locator("#receipts-list li")).to_have_count(0)
        expect(page.locator("#identity")).to_be_hidden()
        expect(page.locator("#next-check-button")).to_be_focused(timeout=WAIT_MS)
        _accessible(page, "next customer", mode)
        page.keyboard.press("Enter")
        expect(page.locator("#pin")).to_be_focused(timeout=WAIT_MS)
        expect(receipt).to_be_hidden()

        # Signing out clears the page.
        _press(page, "#sign-out-button")
        expect(page.locator("#signin")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#work")).to_be_hidden()
        expect(page.locator("#clerk-id")).to_be_focused()
        expect(page.locator("#clerk-bar")).to_be_hidden()
        _accessible(page, "signed out", mode)
    assert counter.issuer.accepted("benefit") == 1


def test_a_clerk_without_the_role_is_refused_in_chinese_and_nothing_happens(
    counter: Counter,
) -> None:
    from playwright.sync_api import expect

    with browser_page(width=1100, height=820, locale="zh-CN") as page:
        page.goto(counter.url)
        _sign_in(page, counter, auditor=True)
        page.keyboard.type(CITIZEN_ID)
        page.keyboard.press("Enter")
        cards = page.locator("#person-cards li .what")
        active = JOB["zh-CN"]["active"].format(card=counter.card_number)
        expect(cards).to_have_text(active, timeout=WAIT_MS)
        _press(page, f'#person-cards li[data-card="{counter.card_number}"] button.danger')
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # yes, a formal loss report
        message = page.locator("#message")
        expect(message).to_contain_text("无权办理", timeout=WAIT_MS)
        expect(message).to_contain_text("未做任何更改")
        expect(cards).to_have_text(active)
        _press(page, "#code-button")
        expect(message).to_contain_text("无权办理", timeout=WAIT_MS)
        expect(page.locator("#code-box")).to_be_hidden()
        _accessible(page, "refused", "standard")
    states = counter.issuer.call("GET", f"/v1/cards/{counter.card_number}", {}, "cards:read")
    assert states["state"] == "active"


def test_the_page_follows_the_browsers_text_size_contrast_and_motion(counter: Counter) -> None:
    from playwright.sync_api import expect

    from tests.axe import assert_accessible

    with browser_page(width=1280, height=900, locale="zh-CN") as page:
        # The browser's default text size raised from 16 px to 24 px (as in its settings).
        session = page.context.new_cdp_session(page)
        session.send("Page.enable")
        session.send("Page.setFontSizes", {"fontSizes": {"standard": 24}})
        page.emulate_media(contrast="more", reduced_motion="reduce")
        page.goto(counter.url)
        _sign_in(page, counter)
        size = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert size == 27.0  # 1.125 x 24
        assert page.locator("#lookup-button").bounding_box()["height"] >= 66  # 2.75rem at 24 px
        page.keyboard.type(CITIZEN_ID)
        page.keyboard.press("Enter")
        expect(page.locator("#person")).to_be_visible(timeout=WAIT_MS)
        # More contrast: black text, and 7:1 everywhere.
        assert page.evaluate("getComputedStyle(document.body).color") == "rgb(0, 0, 0)"
        assert_accessible(page, "prefers-contrast: more", enhanced_contrast=True)
        # Less motion: the loss dialog appears without its animation.
        _press(page, f'#person-cards li[data-card="{counter.card_number}"] button.danger')
        dialog = "getComputedStyle(document.getElementById('dialog')).animationName"
        assert page.evaluate(dialog) == "none"
        page.emulate_media(reduced_motion="no-preference")
        assert page.evaluate(dialog) == "appear"
        page.keyboard.press("Escape")
        expect(page.locator("#dialog")).to_be_hidden()
    states = counter.issuer.call("GET", f"/v1/cards/{counter.card_number}", {}, "cards:read")
    assert states["state"] == "active"


# -- an e-card activated at the counter: the wallet's QR code, the chip and the PIN -------

#: What the clerk and the holder read (Chinese first); the clerk's steps are keyboard only.
ACTIVATION = {
    "zh-CN": {"locale": "zh-CN", "start": "到柜台激活", "waiting": "正在等待柜台激活",
              "pin-wrong": "还可尝试 2 次", "invalid": "不是激活二维码", "done": "电子社保卡已激活",
              "twice": "这部手机已激活", "activated": "已在柜台激活", "status": "正常",
              "ecard-line": "卡号 {card} 的电子社保卡：正常"},
    "en": {"locale": "en-US", "start": "Activate at a counter",
           "waiting": "Waiting for the counter",
           "pin-wrong": "2 tries left", "invalid": "Not an activation code",
           "done": "E-card activated", "twice": "Already active on this phone",
           "activated": "activated at the counter", "status": "Active",
           "ecard-line": "E-card of card {card}: in use"},
}
def _scan(wallet: Any) -> str:
    """What a counter's scanner reads off the phone's screen: the QR code decoded from a
    screenshot of it (zxing-cpp)."""
    import io

    import zxingcpp
    from PIL import Image

    shot = wallet.locator("#counter-qr").screenshot()
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)))
    assert len(found) == 1, f"{len(found)} codes on the phone's screen"
    return str(found[0].text)


def _message_words(page: Any) -> str:
    """The message as the clerk reads it (the folded technical details left out)."""
    return " ".join(page.locator(f"#message-{part}").inner_text()
                    for part in ("title", "detail", "next"))  # fmt: skip


@pytest.mark.parametrize(("lang", "mode"), [("zh-CN", "standard"), ("zh-CN", "care"),
                                            ("en", "standard")])  # fmt: skip
def test_an_ecard_activated_at_the_counter_from_the_wallets_qr_code(
    counter: Counter, tmp_path: Path, lang: str, mode: str
) -> None:
    from playwright.sync_api import expect

    from cardsvc.core.pairing import fingerprint, parse_activation_text
    from tests.browser import chromium
    from tests.issuer.test_wallet_browser import HEIGHT, WIDTH, check_state

    words = ACTIVATION[lang]
    care = mode == "care"
    shot = "" if not care else "care-"
    chinese = lang == "zh-CN"
    with chromium() as browser:
        phone = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT},
                                    locale=words["locale"])  # fmt: skip
        desk = browser.new_context(viewport={"width": 1280, "height": 900}, locale=words["locale"])
        if care:  # both people chose the mode for the elderly before (remembered cookies)
            host = "127.0.0.1"
            phone.add_cookies([{"name": "cardsvc_wallet_mode", "value": "care", "domain": host,
                                "path": "/"}])  # fmt: skip
            desk.add_cookies([{"name": "cardsvc_counter_mode", "value": "care", "domain": host,
                               "path": "/"}])  # fmt: skip
        wallet, page = phone.new_page(), desk.new_page()

        # The holder opens the wallet and chooses to activate at the counter: a QR code.
        wallet.goto(counter.issuer.base + "/wallet")
        start = wallet.locator("#counter-start-button")
        expect(start).to_have_text(words["start"], timeout=WAIT_MS)
        check_state(wallet, "wallet: activation choices", lang, mode)
        start.click()
        expect(wallet.locator("#counter-qr")).to_be_visible(timeout=WAIT_MS)
        expect(wallet.locator("#counter-heading")).to_be_focused()
        expect(wallet.locator("#counter-status")).to_contain_text(words["waiting"])
        shown = wallet.locator("#counter-fingerprint").inner_text()
        assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", shown), shown
        check_state(wallet, "wallet: counter QR", lang, mode)
        if care:  # as large as the screen allows
            box = wallet.locator("#counter-qr").bounding_box()
            assert box["width"] >= 0.85 * WIDTH, box
        if chinese:
            screenshot(wallet, tmp_path, f"wallet-{shot}counter-qr")
        text = _scan(wallet)
        assert text == wallet.locator("#counter-qr").get_attribute("data-text")
        assert fingerprint(parse_activation_text(text)) == shown  # the phone's sum = Python's
        # A reload keeps the same key and keeps waiting.
        wallet.reload()
        expect(wallet.locator("#counter-qr")).to_be_visible(timeout=WAIT_MS)
        expect(wallet.locator("#counter-fingerprint")).to_have_text(shown)

        # The clerk: signed in, the card checked, a wrong PIN, then the right one.
        page.goto(counter.url)
        _sign_in(page, counter)
        expect(page.locator("html")).to_have_attribute("data-mode", mode)
        counter.insert()
        expect(page.locator("#verdict")).to_have_attribute("data-verdict", "genuine",
                                                           timeout=WAIT_MS)  # fmt: skip
        expect(page.locator("#pin")).to_be_focused(timeout=WAIT_MS)
        page.keyboard.type("000000")
        page.keyboard.press("Enter")
        expect(page.locator("#pin-tries")).to_have_text(words["pin-wrong"], timeout=WAIT_MS)
        expect(page.locator("#pin")).to_be_focused()
        page.keyboard.type(PIN)
        page.keyboard.press("Enter")
        expect(page.locator("#services")).to_be_visible(timeout=WAIT_MS)
        # Nothing open to collect: once that is known, the focus is on "continue".
        expect(page.locator("#collect-button")).to_be_focused(timeout=WAIT_MS)

        # The e-card tab, by the arrow keys; then the scanner's text, with Enter.
        _tab_to(page, "#tab-collect")
        page.keyboard.press("ArrowLeft")  # collect <- activate (wraps)
        expect(page.locator("#tab-activate")).to_be_focused()
        expect(page.locator("#activate-form")).to_be_visible()
        _accessible(page, "activate tab", mode)
        _sizes(page, mode)
        page.keyboard.press("Tab")
        expect(page.locator("#activate-text")).to_be_focused()
        page.keyboard.type("SSC1:NCFOXN%TS3DH")  # an e-card's own QR code, not the activation one
        page.keyboard.press("Enter")
        expect(page.locator("#message-title")).to_have_text(words["invalid"], timeout=WAIT_MS)
        if chinese:
            assert latin_words(_message_words(page)) == [], _message_words(page)
        expect(page.locator("#activate-text")).to_be_focused()  # the PIN still stands
        _accessible(page, "activation refused", mode)
        _sizes(page, mode)  # the folded technical details too
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        expect(page.locator("#message-title")).to_have_text(words["done"], timeout=WAIT_MS)
        expect(page.locator("#message-next")).to_contain_text(shown)
        expect(page.locator("#message")).to_have_class(re.compile("info"))
        _accessible(page, "e-card activated", mode)
        if chinese:
            _screenshot(page, tmp_path, f"{shot}ecard-activated")

        # The phone shows the e-card by itself, with a QR code to show.
        expect(wallet.locator("#ecard")).to_be_visible(timeout=WAIT_MS)
        expect(wallet.locator("#holder-name")).to_have_text("李四")
        expect(wallet.locator("#card-status")).to_have_text(words["status"])
        expect(wallet.locator("#message")).to_contain_text(words["activated"])
        expect(wallet.locator("#qr")).to_be_visible(timeout=WAIT_MS)
        assert (wallet.locator("#qr").get_attribute("data-token") or "").startswith("SSC1:")
        check_state(wallet, "wallet: activated at the counter", lang, mode)
        if chinese:
            screenshot(wallet, tmp_path, f"wallet-{shot}counter-activated")

        # The same phone scanned again (the PIN entered again first): said, nothing changes.
        expect(page.locator("#pin")).to_be_visible(timeout=WAIT_MS)
        _tab_to(page, "#pin")
        page.keyboard.type(PIN)
        page.keyboard.press("Enter")
        expect(page.locator("#services")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#collect-button")).to_be_focused(timeout=WAIT_MS)
        _tab_to(page, "#tab-collect")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("Tab")
        expect(page.locator("#activate-text")).to_be_focused()
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        expect(page.locator("#message-title")).to_have_text(words["twice"], timeout=WAIT_MS)
        if chinese:
            assert latin_words(_message_words(page)) == [], _message_words(page)
        _accessible(page, "already active", mode)

        # Looked up by ID number: one e-card, activated at the counter.
        _tab_to(page, "#lookup-id")
        page.keyboard.type(CITIZEN_ID)
        page.keyboard.press("Enter")
        ecards = page.locator("#person-ecards li")
        expect(ecards).to_have_count(1, timeout=WAIT_MS)
        expect(ecards.locator(".what")).to_have_text(
            words["ecard-line"].format(card=counter.card_number))  # fmt: skip
        phone.close()
        desk.close()
    mine = counter.issuer.call("GET", f"/v1/persons/{counter.person_id}/ecards", {},
                               "cards:read")["items"]  # fmt: skip
    assert [(e["state"], e["activated_via"], e["created_by"]) for e in mine] == [
        ("active", "counter", counter.clerk_id)]  # fmt: skip
    assert mine[0]["device_kid"] == parse_activation_text(text).kid

"""The demo wallet page in headless Chromium against a live issuer.

Real components: the issuer app under uvicorn on a loopback port (SQLite, file key store),
Debian's ``chromium`` driven by Playwright (no browser download), WebCrypto and IndexedDB
in the page. The page builds its device proofs in JavaScript; the issuer checks them with
the same code as for any phone.

``CARDSVC_UPDATE_SCREENSHOTS=1`` also writes the screenshots to ``docs/screenshots/``
(the README shows them); otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.registry.lifecycle import CardState
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from tests.browser import browser_page, screenshot
from tests.issuer.ecard_helpers import VERIFY_SCOPES, activation_code, active_holder
from tests.issuer.registry_helpers import bearer, registry_services
from tests.live import free_port, serving

pytestmark = pytest.mark.browser

WAIT_MS = 15_000


@dataclass
class LiveIssuer:
    base: str
    services: Services
    client: TestClient  # the same services in process, for setting up people and cards


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[LiveIssuer]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="wallet browser test",  # type: ignore[arg-type]
    )
    services = registry_services(settings)
    try:
        with serving(create_app(services.settings, services=services), port):
            yield LiveIssuer(
                base=services.settings.issuer,
                services=services,
                client=TestClient(create_app(services.settings, services=services)),
            )
    finally:
        services.engine.dispose()


#: Per language: the browser's locale, the page's <html lang>, and texts the holder reads.
LANGUAGES = {
    # A browser asking for neither Chinese nor English gets the default, zh-CN.
    "zh-CN": {"locale": "fr-FR", "heading": "电子社保卡", "wrong": "激活码不正确",
              "left": "还可尝试 4 次", "countdown": r"(\d+) 秒后刷新二维码",
              "suspended": "已挂失暂停",
              "lost": "您的卡片已挂失暂停", "button": "激活"},
    "en": {"locale": "en-US", "heading": "E-card wallet", "wrong": "activation code is not right",
           "left": "4 more times", "countdown": r"New code in (\d+) s", "suspended": "Suspended",
           "lost": "reported lost", "button": "Activate"},
}


@pytest.fixture(params=list(LANGUAGES))
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def page(lang: str) -> Iterator[Any]:
    with browser_page(width=400, height=720, locale=LANGUAGES[lang]["locale"]) as opened:
        yield opened


def _screenshot(page: Any, tmp_path: Path, name: str, lang: str) -> None:
    # The README shows the Chinese pages (the default) under their old names.
    screenshot(page, tmp_path, f"wallet-{name}" if lang == "zh-CN" else f"wallet-{name}-{lang}")


def _verify(issuer: LiveIssuer, token: str, purpose: str) -> httpx.Response:
    headers = bearer(issuer.services, VERIFY_SCOPES, subject="partner-1")
    return httpx.post(
        issuer.base + "/v1/verify",
        json={"token": token, "purpose": purpose},
        headers=headers,
        timeout=10,
    )


def test_activate_show_refreshing_qr_and_report_lost(
    page: Any, issuer: LiveIssuer, tmp_path: Path, lang: str
) -> None:
    from playwright.sync_api import expect

    words = LANGUAGES[lang]
    services, client = issuer.services, issuer.client
    holder = active_holder(client, services, name="王小明")
    code = activation_code(client, services, holder)
    citizen_id = holder.person["citizen_id"]

    # A short refresh period so the test sees a refresh; the page's default is 30 s.
    page.goto(issuer.base + "/wallet?refresh=3")
    expect(page.locator("#activate")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("h1")).to_have_text(words["heading"])
    expect(page.locator("#activate-button")).to_have_text(words["button"])

    # A wrong code: said in plain words, with the attempts left.
    page.fill("#citizen-id", citizen_id)
    page.fill("#code", "WRONG-CODE")
    page.click("#activate-button")
    message = page.locator("#message")
    expect(message).to_contain_text(words["wrong"], timeout=WAIT_MS)
    expect(message).to_contain_text(words["left"])
    _screenshot(page, tmp_path, "activate", lang)

    # The right code: the device key is made in the page, bound, and the e-card shown.
    page.fill("#code", code)
    page.click("#activate-button")
    expect(page.locator("#ecard")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#holder-name")).to_have_text("王小明")
    expect(page.locator("#card-number")).to_have_text(holder.card_number)
    expect(page.locator("#card-status")).to_have_attribute("data-status", "active")
    expect(page.locator("#activate")).to_be_hidden()

    # A QR token appears; what the page shows verifies at the issuer.
    qr = page.locator("#qr")
    expect(qr).to_be_visible(timeout=WAIT_MS)
    expect(qr).to_have_attribute("data-refreshes", "1", timeout=WAIT_MS)
    first = qr.get_attribute("data-token")
    assert first and first.startswith("SSC1:"), first
    # The same text is there to copy, for a counter without a scanner.
    page.locator("#qr-text-box summary").click()
    expect(page.locator("#qr-text")).to_have_value(first)
    width = page.evaluate("document.getElementById('qr').naturalWidth")
    assert width > 100, "the QR image did not load"
    verified = _verify(issuer, first, "transport")
    assert verified.status_code == 200, verified.text
    assert verified.json()["purpose"] == "transport"
    assert set(verified.json()["claims"]["attributes"]) == {"concession", "concession_until"}

    # The countdown runs and a new token replaces the old one when it reaches zero.
    countdown = page.locator("#countdown")
    countdown_text = re.compile(words["countdown"])
    expect(countdown).to_have_text(countdown_text, timeout=WAIT_MS)
    shown = countdown_text.search(countdown.text_content() or "")
    assert shown and 0 <= int(shown.group(1)) <= 3, countdown.text_content()
    expect(qr).to_have_attribute("data-refreshes", "2", timeout=WAIT_MS)
    second = qr.get_attribute("data-token")
    assert second and second != first
    assert _verify(issuer, second, "transport").status_code == 200

    # A reload keeps the device key (IndexedDB): the e-card is back without activating;
    # at the default period the countdown starts from 30 s.
    page.goto(issuer.base + "/wallet")
    expect(page.locator("#ecard")).to_be_visible(timeout=WAIT_MS)
    expect(qr).to_have_attribute("data-refreshes", "1", timeout=WAIT_MS)
    seconds = int(countdown.get_attribute("data-seconds") or "0")
    assert 25 <= seconds <= 30, seconds
    shown = countdown_text.search(countdown.text_content() or "")
    assert shown and 25 <= int(shown.group(1)) <= 30, countdown.text_content()
    _screenshot(page, tmp_path, "card", lang)
    third = qr.get_attribute("data-token")
    assert third and _verify(issuer, third, "transport").status_code == 200

    # Report lost (after confirming): the card is suspended, the page says so, no QR.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#report-lost")
    status = page.locator("#card-status")
    expect(status).to_have_attribute("data-status", "suspended", timeout=WAIT_MS)
    expect(status).to_contain_text(words["suspended"])
    expect(message).to_contain_text(words["lost"])
    expect(qr).to_be_hidden()
    expect(page.locator("#report-lost")).to_be_disabled()
    _screenshot(page, tmp_path, "lost", lang)
    card = services.cards.get(holder.card_number, now=utcnow())
    assert card.state == CardState.SUSPENDED.value
    assert card.suspended_until is not None
    assert card.suspended_until > utcnow() + timedelta(days=1)  # a temporary loss report
    # Tokens minted before the report no longer verify.
    refused = _verify(issuer, third, "transport")
    assert refused.status_code == 422, refused.text
    assert refused.json()["check"] == "card-suspended"


def test_the_language_switch_is_remembered_and_unknown_languages_read_chinese(
    issuer: LiveIssuer,
) -> None:
    from playwright.sync_api import expect

    with browser_page(width=400, height=720, locale="zh-CN") as page:
        page.goto(issuer.base + "/wallet")
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("#activate-button")).to_have_text("激活", timeout=WAIT_MS)
        page.click("[data-lang-choice=en]")
        expect(page.locator("html")).to_have_attribute("lang", "en", timeout=WAIT_MS)
        expect(page.locator("#activate-button")).to_have_text("Activate", timeout=WAIT_MS)
        # The page's own words from the script are English too.
        page.fill("#citizen-id", "11010519491231002X")
        page.fill("#code", "NO-SUCH-CODE")
        page.click("#activate-button")
        expect(page.locator("#message")).to_contain_text("activation code", timeout=WAIT_MS)
        # Remembered by this browser: a new visit is English although it asks for zh-CN.
        page.goto(issuer.base + "/wallet")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("[data-lang-choice=en]")).to_have_attribute("aria-pressed", "true")
        page.click("[data-lang-choice=zh-CN]")
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN", timeout=WAIT_MS)
        expect(page.locator("h1")).to_have_text("电子社保卡")
    # The catalogue of an unknown language is zh-CN's.
    answer = httpx.get(issuer.base + "/wallet/i18n/xx.json", timeout=10).json()
    assert answer["lang"] == "zh-CN"
    assert answer["messages"]["wallet.activate.button"] == "激活"

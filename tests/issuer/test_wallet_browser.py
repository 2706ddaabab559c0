"""The demo wallet page in headless Chromium against a live issuer.

Real components: the issuer app under uvicorn on a loopback port (SQLite, file key store),
Debian's ``chromium`` driven by Playwright (no browser download), WebCrypto and IndexedDB
in the page. The page builds its device proofs in JavaScript; the issuer checks them with
the same code as for any phone.

The main flow runs in both languages and both modes (standard and the mode for the
elderly, 关怀模式), with axe-core on every state it passes through (7:1 contrast in the
elderly mode) and the sizes measured in the page.

``CARDSVC_UPDATE_SCREENSHOTS=1`` also writes the Chinese screenshots to
``docs/screenshots/`` (the README shows them); otherwise they go to the test's temporary
directory.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import wording
from cardsvc.api.app import create_app
from cardsvc.registry.lifecycle import CardState
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from tests.axe import assert_accessible
from tests.browser import browser_page, screenshot
from tests.issuer.ecard_helpers import VERIFY_SCOPES, Holder, activation_code, active_holder
from tests.issuer.registry_helpers import bearer, registry_services
from tests.issuer.test_holder_views import with_history
from tests.issuer.transaction_helpers import new_entitlement
from tests.live import free_port, serving

pytestmark = pytest.mark.browser

WAIT_MS = 15_000
WIDTH, HEIGHT = 400, 720
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class LiveIssuer:
    base: str
    services: Services
    client: TestClient  # the same services in process, for setting up people and cards


@contextmanager
def live_issuer(tmp_path: Path, **settings_fields: Any) -> Iterator[LiveIssuer]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="wallet browser test",  # type: ignore[arg-type]
        **settings_fields,
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


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[LiveIssuer]:
    with live_issuer(tmp_path) as live:
        yield live


#: Per language: the browser's locale, the page's <html lang>, and texts the holder reads.
LANGUAGES = {
    # A browser asking for neither Chinese nor English gets the default, zh-CN.
    "zh-CN": {"locale": "fr-FR", "heading": "电子社保卡", "wrong": "激活码不正确",
              "left": "还可尝试 4 次", "countdown": r"(\d+) 秒后刷新二维码",
              "suspended": "已挂失暂停", "lost": "您的卡片已挂失暂停", "button": "激活",
              "mode": "关怀模式（大字）", "open": "养老金 2026年12月", "paid": "养老金 2026年11月",
              "paid-before": "养老金 2026年10月", "fee": "缴费",
              "when": r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}", "collect": "可到柜台领取",
              "next": "请携带身份证到就近的社保服务大厅补办，或拨打 12333 社保服务热线。",
              "call": "拨打 12333", "dialog": "确定挂失吗？",
              "none": ["目前没有待领取的待遇。", "还没有待遇领取记录。", "还没有缴费记录。"]},
    "en": {"locale": "en-US", "heading": "E-card wallet", "wrong": "activation code is not right",
           "left": "4 more times", "countdown": r"New code in (\d+) s", "suspended": "Suspended",
           "lost": "reported lost", "button": "Activate", "mode": "Easy view (large text)",
           "open": "Pension, December 2026", "paid": "Pension, November 2026",
           "paid-before": "Pension, October 2026", "fee": "Fee payment",
           "when": r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \(Beijing time\)",
           "collect": "Collect it at a service counter",
           "next": "Bring your ID card to the nearest social security service hall for a new "
                   "card, or call the social security hotline 12333.",
           "call": "Call 12333", "dialog": "Report the card lost?",
           "none": ["No benefits are waiting to be collected.", "No benefits have been paid yet.",
                    "No fees have been paid yet."]},
}  # fmt: skip

#: Per mode: the least body text and target size (CSS px), and the QR code's least share
#: of the viewport's width.
MODES = {
    "standard": {"text": 18.0, "target": 44.0, "qr": 0.8},
    "care": {"text": 22.0, "target": 48.0, "qr": 0.9},
}


@pytest.fixture(params=list(LANGUAGES))
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def page(lang: str) -> Iterator[Any]:
    with browser_page(width=WIDTH, height=HEIGHT, locale=LANGUAGES[lang]["locale"]) as opened:
        yield opened


def _screenshot(page: Any, tmp_path: Path, name: str, lang: str, mode: str) -> None:
    # The README shows the Chinese pages (the default), in both modes.
    if lang == "zh-CN":
        prefix = "wallet" if mode == "standard" else "wallet-care"
        screenshot(page, tmp_path, f"{prefix}-{name}")


def _verify(issuer: LiveIssuer, token: str, purpose: str) -> httpx.Response:
    headers = bearer(issuer.services, VERIFY_SCOPES, subject="partner-1")
    return httpx.post(
        issuer.base + "/v1/verify",
        json={"token": token, "purpose": purpose},
        headers=headers,
        timeout=10,
    )


_SIZES = """() => {
  const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
  const controls = [...document.querySelectorAll("button, input, select, summary, a[href]")]
    .filter(shown).map((e) => {
      const box = e.getBoundingClientRect();
      const id = e.id || e.textContent.trim().slice(0, 20);
      return { id, width: box.width, height: box.height };
    });
  const texts = [...document.querySelectorAll("p, label, li, dd, dt, figcaption")]
    .filter((e) => shown(e) && e.textContent.trim())
    .map((e) => ({ text: e.textContent.trim().slice(0, 20),
                   size: parseFloat(getComputedStyle(e).fontSize) }));
  const unnamed = [...document.querySelectorAll("button, input, select, textarea, a[href]")]
    .filter(shown).filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
      && !e.textContent.trim()).map((e) => e.id);
  return { controls, texts, unnamed,
           body: parseFloat(getComputedStyle(document.body).fontSize) };
}"""


def check_state(page: Any, state: str, lang: str, mode: str) -> None:
    """axe on the page as it is (7:1 in the elderly mode), and the sizes measured."""
    # As it stays, after any appearing animation (a dialog fades in).
    page.evaluate("() => Promise.all(document.getAnimations().map((a) => a.finished))")
    assert_accessible(page, f"{state} ({lang}, {mode})", enhanced_contrast=mode == "care")
    least = MODES[mode]
    sizes = page.evaluate(_SIZES)
    assert sizes["body"] >= least["text"], (state, sizes["body"])
    assert sizes["texts"], state
    small = [t for t in sizes["texts"] if t["size"] < least["text"]]
    assert not small, (state, small)
    assert sizes["controls"], state
    tiny = [c for c in sizes["controls"]
            if c["height"] < least["target"] or c["width"] < least["target"]]  # fmt: skip
    assert not tiny, (state, tiny)
    assert not sizes["unnamed"], (state, sizes["unnamed"])


def _history(issuer: LiveIssuer, holder: Holder) -> None:
    """Two pensions paid, a fee paid, and next month's pension open."""
    with_history(issuer.client, issuer.services, holder, ["2026-10", "2026-11"])
    new_entitlement(issuer.client, issuer.services, holder.person_id, period="2026-12")


def test_activate_show_read_records_and_report_lost(
    page: Any, issuer: LiveIssuer, tmp_path: Path, lang: str, mode: str
) -> None:
    from playwright.sync_api import expect

    words = LANGUAGES[lang]
    services, client = issuer.services, issuer.client
    holder = active_holder(client, services, name="王小明")
    _history(issuer, holder)
    code = activation_code(client, services, holder)
    citizen_id = holder.person["citizen_id"]
    care = mode == "care"
    root = page.locator("html")

    # A short refresh period so the test sees a refresh; the page's default is 30 s.
    page.goto(issuer.base + "/wallet?refresh=3")
    expect(page.locator("#activate")).to_be_visible(timeout=WAIT_MS)
    expect(root).to_have_attribute("lang", lang)
    expect(root).to_have_attribute("data-mode", "standard")
    expect(page.locator("h1")).to_have_text(words["heading"])
    expect(page.locator("#activate-button")).to_have_text(words["button"])
    switch = page.locator("#mode-switch")
    expect(switch).to_have_text(words["mode"])
    expect(switch).to_have_attribute("aria-pressed", "false", timeout=WAIT_MS)
    if care:
        switch.click()
        expect(root).to_have_attribute("data-mode", "care")
        expect(switch).to_have_attribute("aria-pressed", "true")
    check_state(page, "activation form", lang, mode)

    # A wrong code: said in plain words, with the attempts left.
    page.fill("#citizen-id", citizen_id)
    page.fill("#code", "WRONG-CODE")
    page.click("#activate-button")
    message = page.locator("#message")
    expect(message).to_contain_text(words["wrong"], timeout=WAIT_MS)
    expect(message).to_contain_text(words["left"])
    check_state(page, "error message", lang, mode)
    _screenshot(page, tmp_path, "activate", lang, mode)

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
    assert page.evaluate("document.getElementById('qr').naturalWidth") > 100
    # The QR text is a developer aid: not on the page unless the issuer enables it.
    expect(page.locator("#qr-text-box")).to_have_count(0)
    expect(page.locator("#qr-text")).to_have_count(0)
    verified = _verify(issuer, first, "transport")
    assert verified.status_code == 200, verified.text
    assert verified.json()["purpose"] == "transport"
    assert set(verified.json()["claims"]["attributes"]) == {"concession", "concession_until"}

    # The code as large as the screen allows, whole within the viewport.
    box = qr.bounding_box()
    assert box["width"] >= MODES[mode]["qr"] * WIDTH, box
    assert box["width"] <= WIDTH and box["height"] <= HEIGHT, box
    report = page.locator("#report-lost")
    records = page.locator("#records")
    if care:
        # One action per screen: the code and its purpose; the rest one step away.
        expect(records).to_be_hidden()
        expect(report).to_be_hidden()
        expect(page.locator("#to-records")).to_be_visible()
        expect(page.locator("#to-more")).to_be_visible()
    else:
        # Everything on one page, but "Report card lost" not directly under the code:
        # the records lie between.
        expect(page.locator("#to-records")).to_be_hidden()
        qr_area, listed = page.locator("#qr-area").bounding_box(), records.bounding_box()
        lost_button = report.bounding_box()
        assert qr_area["y"] + qr_area["height"] < listed["y"] < lost_button["y"]
        assert lost_button["y"] - (qr_area["y"] + qr_area["height"]) > 200
    check_state(page, "e-card with QR", lang, mode)

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

    # The holder's own records: by benefit name and period, amounts, Beijing time.
    if care:
        page.click("#to-records")
        expect(records).to_be_visible()
        expect(page.locator("#card-view")).to_be_hidden()
        expect(page.locator("#records-heading")).to_be_focused()
    expect(page.locator("#records-status")).to_have_attribute("data-state", "ready",
                                                              timeout=WAIT_MS)  # fmt: skip
    open_list, paid, fees = (page.locator(f"#{n}-list") for n in ("open", "benefit", "fee"))
    expect(open_list).to_have_attribute("data-count", "1")
    expect(open_list.locator("li")).to_have_text([re.compile(
        re.escape(words["open"]) + r"\s*¥3,500\.00\s*" + re.escape(words["collect"]))])
    expect(paid).to_have_attribute("data-count", "2")
    when = words["when"]
    expect(paid.locator("li")).to_have_text([
        re.compile(re.escape(words[period]) + r"\s*¥3,500\.00\s*" + when)
        for period in ("paid", "paid-before")
    ])
    expect(fees.locator("li")).to_have_text([re.compile(re.escape(words["fee"]) + r"\s*¥12\.00\s*"
                                                        + when)])  # fmt: skip
    # The very times the issuer recorded, in Beijing time (UTC+8), as the catalogue writes them.
    rows = services.transactions.for_person(uuid.UUID(holder.person_id), after=None, limit=10)
    beijing = {wording.beijing(row.at, lang) for row in rows}
    assert len(rows) == 3
    shown_times = set(page.locator("#records .when").all_inner_texts())
    assert shown_times == beijing, (shown_times, beijing)
    listed_text = records.inner_text()
    assert not UUID.search(listed_text), listed_text
    assert "pension" not in listed_text, listed_text  # the code, not the name
    assert not re.search(r"\d{4}-\d{2}(?!-\d)", listed_text), listed_text  # a raw period
    check_state(page, "records", lang, mode)
    _screenshot(page, tmp_path, "records", lang, mode)
    if care:
        page.locator("#records [data-view-to=card]").click()
        expect(page.locator("#card-view")).to_be_visible()
        expect(records).to_be_hidden()

    # A reload keeps the device key (IndexedDB) and the mode (its cookie, read by the
    # server): the e-card is back without activating; the countdown starts from 30 s.
    page.goto(issuer.base + "/wallet")
    expect(root).to_have_attribute("data-mode", mode)
    expect(page.locator("#ecard")).to_be_visible(timeout=WAIT_MS)
    expect(qr).to_have_attribute("data-refreshes", "1", timeout=WAIT_MS)
    seconds = int(countdown.get_attribute("data-seconds") or "0")
    assert 25 <= seconds <= 30, seconds
    shown = countdown_text.search(countdown.text_content() or "")
    assert shown and 25 <= int(shown.group(1)) <= 30, countdown.text_content()
    if care:  # the first screen shows the whole code, without scrolling
        box = qr.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, box
    _screenshot(page, tmp_path, "card", lang, mode)
    third = qr.get_attribute("data-token")
    assert third and _verify(issuer, third, "transport").status_code == 200

    # Report lost: asked in the page (a modal dialog, focus inside); Escape cancels and
    # gives the focus back; nothing happens.
    if care:
        page.click("#to-more")
        expect(report).to_be_visible()
        expect(qr).to_be_hidden()
        expect(page.locator("#more-heading")).to_be_focused()
    report.click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-heading")).to_have_text(words["dialog"])
    expect(page.locator("#confirm-no")).to_be_focused()
    check_state(page, "dialog open", lang, mode)
    _screenshot(page, tmp_path, "confirm", lang, mode)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(report).to_be_focused()
    expect(page.locator("#card-status")).to_have_attribute("data-status", "active")
    assert services.cards.get(holder.card_number, now=utcnow()).state == CardState.ACTIVE.value

    # Asked again and confirmed: the card is suspended, the page says so and what to do next.
    report.click()
    expect(dialog).to_be_visible()
    page.click("#confirm-yes")
    expect(dialog).to_be_hidden()
    status = page.locator("#card-status")
    expect(status).to_have_attribute("data-status", "suspended", timeout=WAIT_MS)
    expect(status).to_contain_text(words["suspended"])
    expect(message).to_contain_text(words["lost"])
    next_steps = page.locator("#next-steps")
    expect(next_steps).to_be_visible()
    expect(page.locator("#next-steps-text")).to_have_text(words["next"])
    expect(page.locator("#hotline")).to_have_text(words["call"])
    expect(page.locator("#hotline")).to_have_attribute("href", "tel:12333")
    expect(page.locator("#next-steps-heading")).to_be_focused()
    expect(qr).to_be_hidden()
    expect(report).to_be_disabled()
    check_state(page, "after loss report", lang, mode)
    _screenshot(page, tmp_path, "lost", lang, mode)
    card = services.cards.get(holder.card_number, now=utcnow())
    assert card.state == CardState.SUSPENDED.value
    assert card.suspended_until is not None
    assert card.suspended_until > utcnow() + timedelta(days=1)  # a temporary loss report
    # Tokens minted before the report no longer verify.
    refused = _verify(issuer, third, "transport")
    assert refused.status_code == 422, refused.text
    assert refused.json()["check"] == "card-suspended"


def test_empty_records_say_so_in_words(page: Any, issuer: LiveIssuer, lang: str) -> None:
    from playwright.sync_api import expect

    holder = active_holder(issuer.client, issuer.services)
    code = activation_code(issuer.client, issuer.services, holder)
    page.goto(issuer.base + "/wallet")
    page.fill("#citizen-id", holder.person["citizen_id"])
    page.fill("#code", code)
    page.click("#activate-button")
    expect(page.locator("#records-status")).to_have_attribute("data-state", "ready",
                                                              timeout=WAIT_MS)  # fmt: skip
    for name, words in zip(("open", "benefit", "fee"), LANGUAGES[lang]["none"], strict=True):
        listed = page.locator(f"#{name}-list")
        expect(listed).to_have_attribute("data-count", "0")
        expect(listed.locator("li")).to_have_text([words])
    check_state(page, "empty records", lang, "standard")

    # Removing the e-card is asked in the page too; afterwards the browser holds no key.
    page.click("#forget")
    expect(page.locator("#confirm-yes")).to_be_visible()
    page.click("#confirm-yes")
    expect(page.locator("#activate")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#ecard")).to_be_hidden()
    page.goto(issuer.base + "/wallet")
    expect(page.locator("#activate")).to_be_visible(timeout=WAIT_MS)


def test_developer_aids_and_the_issuers_next_steps(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    next_steps = {"zh-CN": "请到深圳市社保服务大厅（福田区）补办。", "en": "Visit the Futian hall."}
    with (
        live_issuer(tmp_path, wallet_developer_aids=True, wallet_hotline="0755-12333",
                    wallet_loss_next_steps=next_steps) as issuer,
        browser_page(width=WIDTH, height=HEIGHT, locale="zh-CN") as page,
    ):  # fmt: skip
        holder = active_holder(issuer.client, issuer.services)
        code = activation_code(issuer.client, issuer.services, holder)
        page.goto(issuer.base + "/wallet")
        page.fill("#citizen-id", holder.person["citizen_id"])
        page.fill("#code", code)
        page.click("#activate-button")
        qr = page.locator("#qr")
        expect(qr).to_have_attribute("data-refreshes", "1", timeout=WAIT_MS)
        # With the aid: the same text as the code, to copy into a counter without a scanner.
        page.locator("#qr-text-box summary").click()
        expect(page.locator("#qr-text")).to_have_value(qr.get_attribute("data-token") or "-")
        check_state(page, "QR text open", "zh-CN", "standard")
        page.click("#report-lost")
        page.click("#confirm-yes")
        expect(page.locator("#next-steps-text")).to_have_text(next_steps["zh-CN"],
                                                              timeout=WAIT_MS)  # fmt: skip
        expect(page.locator("#hotline")).to_have_text("拨打 0755-12333")
        expect(page.locator("#hotline")).to_have_attribute("href", "tel:075512333")
        expect(page.locator("#qr-text-box")).to_be_hidden()


def test_the_page_follows_the_browsers_text_size_contrast_and_motion(issuer: LiveIssuer) -> None:
    from playwright.sync_api import expect

    with browser_page(width=WIDTH, height=HEIGHT, locale="zh-CN") as page:
        # The browser's default text size raised from 16 px to 24 px (as in its settings).
        session = page.context.new_cdp_session(page)
        session.send("Page.enable")
        session.send("Page.setFontSizes", {"fontSizes": {"standard": 24}})
        page.emulate_media(contrast="more", reduced_motion="reduce")
        page.goto(issuer.base + "/wallet")
        expect(page.locator("#activate")).to_be_visible(timeout=WAIT_MS)
        size = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert size == 27.0  # 1.125 x 24
        button = page.locator("#activate-button").bounding_box()
        assert button["height"] >= 66  # 2.75rem at 24 px
        # More contrast: black text, and 7:1 everywhere.
        color = page.evaluate("getComputedStyle(document.body).color")
        assert color == "rgb(0, 0, 0)"
        assert_accessible(page, "prefers-contrast: more", enhanced_contrast=True)
        # Less motion: the dialog appears without its animation.
        page.evaluate("document.getElementById('confirm').showModal()")
        assert page.evaluate("getComputedStyle(document.getElementById('confirm')).animationName") \
            == "none"
        page.emulate_media(reduced_motion="no-preference")
        assert page.evaluate("getComputedStyle(document.getElementById('confirm')).animationName") \
            == "appear"


def test_the_language_switch_is_remembered_and_unknown_languages_read_chinese(
    issuer: LiveIssuer,
) -> None:
    from playwright.sync_api import expect

    with browser_page(width=WIDTH, height=HEIGHT, locale="zh-CN") as page:
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

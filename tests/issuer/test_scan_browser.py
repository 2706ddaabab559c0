"""The scanner page (/scan) in headless Chromium with a fake camera, against a live issuer.

Real components: the issuer under uvicorn on a loopback port (SQLite, file key store)
serving the page and the files js/scan/build.mjs built (the verifier bundle, the page's
script with the zxing-wasm decoder); Debian's ``chromium`` with its fake media stream
playing a ``.y4m`` video of a QR code the issuer minted for a real e-card
(:mod:`tests.camera`). The page decodes the frames, verifies offline with
``@cardsvc/verify`` and its bundle in IndexedDB, and says 有效 / 无效 / 无法确认.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.axe import assert_accessible
from tests.browser import chromium, fake_camera_args, screenshot
from tests.camera import write_video
from tests.issuer.ecard_helpers import Holder, Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import registry_services
from tests.js.package import scanner_built
from tests.live import free_port, serving

pytestmark = pytest.mark.browser

WAIT_MS = 20_000


@dataclass
class Scanner:
    """A live issuer, a holder with an e-card on a phone, and a camera file to fill."""

    base: str
    services: Services
    client: TestClient
    holder: Holder
    ecard_id: str
    phone: Phone
    camera: Path

    def token(self, purpose: str = "transport") -> str:
        minted = mint(self.client, self.services, self.ecard_id, self.phone, purpose)
        assert minted.status_code == 200, minted.text
        return str(minted.json()["tokens"][0]["token"])

    def show(self, text: str | None) -> None:
        """Put ``text``'s QR code (or none) in front of the camera."""
        write_video(self.camera, text)


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[Scanner]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="scan browser test",  # type: ignore[arg-type]
        scanner_dir=scanner_built(),
        status_sync_interval_seconds=0,
    )
    services = registry_services(settings)
    client = TestClient(create_app(services.settings, services=services))
    holder = active_holder(client, services, name="王小明")
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    camera = write_video(tmp_path / "camera.y4m", None)
    try:
        with serving(create_app(services.settings, services=services), port):
            yield Scanner(
                base=services.settings.issuer, services=services, client=client,
                holder=holder, ecard_id=str(ecard["ecard_id"]), phone=phone, camera=camera,
            )  # fmt: skip
    finally:
        services.engine.dispose()


@pytest.fixture
def browser(scanner: Scanner) -> Iterator[Any]:
    with chromium(extra_args=fake_camera_args(scanner.camera)) as launched:
        yield launched


def _open(browser: Any, scanner: Scanner, *, clock: bool = False) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 480, "height": 900}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if clock:
        page.clock.install()
    page.goto(scanner.base + "/scan")
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=WAIT_MS)
    assert not errors, errors
    return context, page


def _choose(page: Any, purpose: str) -> None:
    page.select_option("#purpose", purpose)
    page.click("#start")


def _verdict(page: Any, outcome: str, word: str, reason: str) -> Any:
    from playwright.sync_api import expect

    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-outcome", outcome, timeout=WAIT_MS)
    expect(verdict).to_have_attribute("data-reason", reason)
    expect(page.locator("#verdict-word")).to_have_text(word)
    return verdict


def test_a_valid_code_then_the_same_code_again(
    browser: Any, scanner: Scanner, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    scanner.show(scanner.token("transport"))
    context, page = _open(browser, scanner)
    expect(page.locator("#setup")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#bundle")).to_have_attribute("data-network", "updated")
    assert_accessible(page, "choose the purpose")
    _choose(page, "transport")

    verdict = _verdict(page, "valid", "有效", "")
    expect(page.locator("#verdict-reason")).to_contain_text("交通出行")
    # Transport discloses the concession and its end, never the name or ID number.
    claims = page.locator("#verdict-claims dd")
    assert sorted(claims.evaluate_all("els => els.map(e => e.dataset.attribute)")) == [
        "concession", "concession_until"]  # fmt: skip
    shown = page.locator("#verdict").inner_text()
    assert "王小明" not in shown and "身份证" not in shown and "姓名" not in shown
    expect(page.locator("#bundle-age")).to_contain_text("核验数据签发于")
    assert float(verdict.get_attribute("data-decode-ms") or "nan") >= 0
    assert_accessible(page, "valid")
    screenshot(page, tmp_path, "scan-valid")
    # Verdict words are large (at least 18 px everywhere, the verdict far more).
    size = page.eval_on_selector("#verdict-word", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 48, size

    # The same code in front of the camera again: refused as replayed.
    page.click("#next")
    _verdict(page, "invalid", "无效", "replayed")
    expect(page.locator("#verdict-reason")).to_contain_text("已使用过")
    assert page.locator("#verdict-claims dd").count() == 0
    assert_accessible(page, "invalid (replayed)")
    screenshot(page, tmp_path, "scan-replayed")

    # In English (the switch reloads; the purpose is remembered, the code still used).
    page.click("[data-lang-choice=en]")
    expect(page.locator("html")).to_have_attribute("lang", "en", timeout=WAIT_MS)
    _verdict(page, "invalid", "Invalid", "replayed")
    expect(page.locator("#verdict-reason")).to_contain_text("already used")
    expect(page.locator("#chosen-purpose")).to_have_text("Transport")
    assert_accessible(page, "invalid, English")
    context.close()


def test_an_expired_code(browser: Any, scanner: Scanner) -> None:
    from playwright.sync_api import expect

    real = scanner.services.clock
    scanner.services.clock = lambda: real() - timedelta(minutes=15)
    try:
        old = scanner.token("transport")
    finally:
        scanner.services.clock = real
    scanner.show(old)
    context, page = _open(browser, scanner)
    _choose(page, "transport")
    _verdict(page, "invalid", "无效", "expired")
    expect(page.locator("#verdict-reason")).to_contain_text("已过期")
    context.close()


def test_a_code_for_another_purpose(browser: Any, scanner: Scanner) -> None:
    from playwright.sync_api import expect

    scanner.show(scanner.token("identity"))
    context, page = _open(browser, scanner)
    _choose(page, "transport")
    _verdict(page, "invalid", "无效", "purpose")
    expect(page.locator("#verdict-reason")).to_contain_text("其他业务")
    assert page.locator("#verdict-claims dd").count() == 0
    context.close()


def test_a_revoked_e_card_after_the_bundle_is_updated(browser: Any, scanner: Scanner) -> None:
    from playwright.sync_api import expect

    scanner.show(scanner.token("transport"))
    context, page = _open(browser, scanner)
    _choose(page, "transport")
    _verdict(page, "valid", "有效", "")
    before = int(page.locator("#bundle").get_attribute("data-version") or "0")

    # A new phone is bound: the old e-card is revoked. Its next code still verifies by
    # signature; the updated bundle says revoked.
    fresh = scanner.token("transport")
    activate(scanner.client, scanner.services, scanner.holder, Phone())
    bundle = page.locator("#bundle")
    refreshes = int(bundle.get_attribute("data-refreshes") or "0")
    page.click("#update")
    expect(bundle).to_have_attribute("data-refreshes", str(refreshes + 1), timeout=WAIT_MS)
    expect(bundle).to_have_attribute("data-network", "updated")
    after = int(bundle.get_attribute("data-version") or "0")
    assert after > before, (before, after)
    scanner.show(fresh)
    page.click("#next")
    _verdict(page, "invalid", "无效", "revoked")
    expect(page.locator("#verdict-reason")).to_contain_text("已注销")
    assert page.locator("#verdict-claims dd").count() == 0
    context.close()


def test_offline_with_an_old_bundle_and_opened_from_the_service_worker(
    browser: Any, scanner: Scanner, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context, page = _open(browser, scanner, clock=True)
    expect(page.locator("#bundle")).to_have_attribute("data-network", "updated")
    version = page.locator("#bundle").get_attribute("data-version")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    # No network, and a day and an hour later: the page opens from its service worker
    # with the bundle it kept, and cannot vouch for status with a bundle that old.
    context.set_offline(True)
    later = timedelta(hours=25)
    page.clock.fast_forward(int(later.total_seconds() * 1000))
    real = scanner.services.clock
    scanner.services.clock = lambda: real() + later
    try:
        scanner.show(scanner.token("transport"))
    finally:
        scanner.services.clock = real
    page.reload()
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=WAIT_MS)
    bundle = page.locator("#bundle")
    expect(bundle).to_have_attribute("data-network", "offline")
    expect(bundle).to_have_attribute("data-version", version or "")
    expect(page.locator("#bundle-age")).to_contain_text("小时前")
    _choose(page, "transport")
    _verdict(page, "status-unknown", "无法确认", "stale-bundle")
    expect(page.locator("#verdict-reason")).to_contain_text("过旧")
    assert_accessible(page, "cannot confirm (offline, old bundle)")
    screenshot(page, tmp_path, "scan-unknown")
    context.close()


def test_the_page_answers_a_problem_while_it_is_not_built(tmp_path: Path) -> None:
    settings = Settings(
        issuer="http://127.0.0.1:1",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="scan browser test",  # type: ignore[arg-type]
        scanner_dir=tmp_path / "not-built",
    )
    services = registry_services(settings)
    try:
        client = TestClient(create_app(services.settings, services=services))
        for path in ("/scan", "/scan/scan.min.js", "/scan/zxing_reader.wasm", "/scan/sw.js"):
            answer = client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"].endswith("/scanner-not-built")
            assert answer.json()["title"] == "Scanner page not built"
    finally:
        services.engine.dispose()


def test_a_page_bringing_another_root_key_is_refused(browser: Any, scanner: Scanner) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from playwright.sync_api import expect

    from cardsvc.core.keys import public_jwk

    context, page = _open(browser, scanner)
    # As if this device had pinned another issuer's root on an earlier visit: the page's
    # root (this issuer's) must not replace it.
    other = json.dumps(public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    page.evaluate(
        """(jwk) => new Promise((resolve, reject) => {
             const open = indexedDB.open("cardsvc-scan", 1);
             open.onsuccess = () => {
               const tx = open.result.transaction("state", "readwrite");
               tx.objectStore("state").put(jwk, "pinned-root");
               tx.oncomplete = () => { open.result.close(); resolve(true); };
               tx.onerror = () => reject(tx.error);
             };
             open.onerror = () => reject(open.error);
           })""",
        other,
    )
    page.reload()
    page.wait_for_selector("body[data-ready='refused']", state="attached", timeout=WAIT_MS)
    expect(page.locator("#message")).to_contain_text("根密钥")
    expect(page.locator("#setup")).to_be_hidden()
    context.close()

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


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page(width=400, height=720) as opened:
        yield opened


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    screenshot(page, tmp_path, f"wallet-{name}")


def _verify(issuer: LiveIssuer, token: str, purpose: str) -> httpx.Response:
    headers = bearer(issuer.services, VERIFY_SCOPES, subject="partner-1")
    return httpx.post(
        issuer.base + "/v1/verify",
        json={"token": token, "purpose": purpose},
        headers=headers,
        timeout=10,
    )


def test_activate_show_refreshing_qr_and_report_lost(
    page: Any, issuer: LiveIssuer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    services, client = issuer.services, issuer.client
    holder = active_holder(client, services, name="王小明")
    code = activation_code(client, services, holder)
    citizen_id = holder.person["citizen_id"]

    # A short refresh period so the test sees a refresh; the page's default is 30 s.
    page.goto(issuer.base + "/wallet?refresh=3")
    expect(page.locator("#activate")).to_be_visible(timeout=WAIT_MS)

    # A wrong code: said in plain words, with the attempts left.
    page.fill("#citizen-id", citizen_id)
    page.fill("#code", "WRONG-CODE")
    page.click("#activate-button")
    message = page.locator("#message")
    expect(message).to_contain_text("activation code is not right", timeout=WAIT_MS)
    expect(message).to_contain_text("4 more times")
    _screenshot(page, tmp_path, "activate")

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
    expect(countdown).to_have_text(re.compile(r"New code in [0-3] s"), timeout=WAIT_MS)
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
    expect(countdown).to_have_text(re.compile(r"New code in (2[5-9]|30) s"))
    _screenshot(page, tmp_path, "card")
    third = qr.get_attribute("data-token")
    assert third and _verify(issuer, third, "transport").status_code == 200

    # Report lost (after confirming): the card is suspended, the page says so, no QR.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#report-lost")
    status = page.locator("#card-status")
    expect(status).to_have_attribute("data-status", "suspended", timeout=WAIT_MS)
    expect(status).to_contain_text("Suspended")
    expect(message).to_contain_text("reported lost")
    expect(qr).to_be_hidden()
    expect(page.locator("#report-lost")).to_be_disabled()
    _screenshot(page, tmp_path, "lost")
    card = services.cards.get(holder.card_number, now=utcnow())
    assert card.state == CardState.SUSPENDED.value
    assert card.suspended_until is not None
    assert card.suspended_until > utcnow() + timedelta(days=1)  # a temporary loss report
    # Tokens minted before the report no longer verify.
    refused = _verify(issuer, third, "transport")
    assert refused.status_code == 422, refused.text
    assert refused.json()["check"] == "card-suspended"

"""``./dev run``'s demo end to end: ``python -m demo`` in a fresh directory, twice.

Real components: the issuer (SQLite, file key store), pcscd with vpcd, the card emulator
personalised through PC/SC, ``reader-agent serve``, and Debian's Chromium (Playwright)
doing the three things the banner says to try, on the two pages. The first run sets
everything up and prints the addresses; one SIGINT (Ctrl-C) stops it all; the second run
finds the same person and card.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import chromium
from tests.live import free_port

pytestmark = [pytest.mark.pcscd, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
READY = "Three things to try:"


class Demo:
    def __init__(
        self, workdir: Path, issuer_port: int, page_port: int, **settings: str
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CARDSVC_DEV_MODE": "1",
               "CARDSVC_PORT": str(issuer_port), "READER_AGENT_PORT": str(page_port),
               **settings}  # fmt: skip
        env.pop("CARDSVC_ISSUER", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "demo"], cwd=workdir, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while READY not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the demo did not get ready:\n{self.output}")
            time.sleep(0.2)
        time.sleep(0.5)  # the rest of the banner
        return self.output

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what one Ctrl-C sends
        code = self.process.wait(30)
        self._reader.join(5)
        return code


def _card_number(output: str) -> str:
    match = re.search(r"card (\w{9}) in reader", output)
    assert match, output
    return match[1]


def test_demo_runs_everything_stops_on_one_ctrl_c_and_reuses_its_data(
    tmp_path: Path, pcscd: object
) -> None:
    issuer_port, page_port = free_port(), free_port()
    first = Demo(tmp_path, issuer_port, page_port)
    try:
        out = first.wait_ready()
        assert f"counter page  http://127.0.0.1:{page_port}" in out, out
        assert f"wallet page   http://127.0.0.1:{issuer_port}/wallet" in out
        assert "Simplified Chinese by default" in out
        assert "personalised on the emulated chip" in out
        for url in (f"http://127.0.0.1:{issuer_port}/health",
                    f"http://127.0.0.1:{issuer_port}/wallet",
                    f"http://127.0.0.1:{page_port}/"):  # fmt: skip
            assert httpx.get(url, timeout=10).status_code == 200, url
        card = _card_number(out)
        code = re.search(r"and code ([0-9A-Z-]+);", out)
        assert code, out
        clerk = re.search(r"Demo clerk 李敏: clerk ID (\S+), password (\S+) ", out)
        assert clerk, out
        _three_things_to_try(f"http://127.0.0.1:{page_port}",
                             f"http://127.0.0.1:{issuer_port}/wallet", code[1],
                             (clerk[1], clerk[2]))  # fmt: skip
    finally:
        status = first.stop()
    assert status == 0, first.output
    assert "demo stopped" in first.output
    # Everything it started is gone: the ports are free again and the card is out.
    for port in (issuer_port, page_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    from reader_agent import pcsc

    pcsc.wait_for_removal("Virtual PCD 00 00", timeout=10.0)

    second = Demo(tmp_path, issuer_port, page_port)
    try:
        out = second.wait_ready()
        assert "personalised" not in out  # the same chip, kept in var/demo/card.json
        assert _card_number(out) == card
        # Reported lost in the first run, resumed for the second: a fresh activation code.
        assert re.search(r"and code ([0-9A-Z-]+);", out), out
        # The month's pension was collected in the first run: the banner says so.
        assert "was collected on an earlier run" in out, out
        assert "created" not in out  # the same keys
    finally:
        assert second.stop() == 0, second.output


def _three_things_to_try(
    counter_url: str, wallet_url: str, code: str, clerk: tuple[str, str]
) -> None:
    """What the banner tells a new user to do, in a browser, with its promised outcome."""
    from playwright.sync_api import expect

    from tests.agent.test_counter_page_browser_pcscd import WAIT_MS

    with chromium() as browser:
        # Chinese browsers: the pages are Chinese (the banner says so).
        counter = browser.new_context(locale="zh-CN").new_page()
        wallet = browser.new_context(locale="zh-CN").new_page()

        # 1. Check the card, PIN, collect this month's pension, receipt.
        counter.goto(counter_url)
        counter.fill("#clerk-id", clerk[0])  # the clerk signs in first
        counter.fill("#clerk-password", clerk[1])
        counter.click("#sign-in-button")
        expect(counter.locator("#clerk-name")).to_have_text("柜员：李敏", timeout=WAIT_MS)
        expect(counter.locator("#verdict")).to_have_attribute(
            "data-verdict", "genuine", timeout=WAIT_MS)  # fmt: skip
        counter.fill("#pin", "123456")
        counter.click("#pin-button")
        choice = counter.locator('#entitlements input[type="radio"]')
        expect(choice).to_have_count(1, timeout=WAIT_MS)
        choice.check()
        counter.click("#collect-button")
        expect(counter.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(counter.locator("#confirm-text")).to_contain_text("养老金")
        expect(counter.locator("#confirm-text")).to_contain_text("¥3,500.00")
        counter.click("#confirm-button")
        expect(counter.locator("#receipt-state")).to_have_text(
            "发卡机构已受理", timeout=WAIT_MS)  # fmt: skip
        expect(counter.locator("#receipt-terminal")).to_have_text("演示柜台 1号窗口")
        expect(counter.locator("#receipt-clerk")).to_have_text("李敏")

        # 2. Activate the e-card, show it for identity, paste its text at the counter.
        wallet.goto(wallet_url + "?refresh=3")  # the next code in 3 s, not 30
        wallet.fill("#citizen-id", "11010519491231002X")
        wallet.fill("#code", code)
        wallet.click("#activate-button")
        expect(wallet.locator("#ecard")).to_be_visible(timeout=WAIT_MS)
        wallet.select_option("#purpose", "identity")

        def next_qr_text(previous: str | None) -> str:
            qr = wallet.locator("#qr")
            expect(qr).to_have_attribute("data-purpose", "identity", timeout=WAIT_MS)
            if previous is not None:
                expect(qr).not_to_have_attribute("data-token", previous, timeout=WAIT_MS)
            wallet.click("#qr-text-box summary")
            text = wallet.locator("#qr-text").input_value()
            assert text.startswith("SSC1:"), text
            return text

        def scan(text: str) -> None:
            counter.fill("#qr-text", text)
            counter.press("#qr-text", "Enter")

        first = next_qr_text(None)
        counter.select_option("#qr-purpose", "identity")
        scan(first)
        result = counter.locator("#qr-result")
        expect(result).to_have_attribute("data-outcome", "valid", timeout=WAIT_MS)
        expect(counter.locator("#qr-attributes")).to_contain_text("王芳")

        # 3. The next code, the card reported lost, then the code at the counter.
        second = next_qr_text(first)
        wallet.click("#report-lost")
        wallet.click("#confirm-yes")  # the page's own confirmation dialog
        expect(wallet.locator("#card-status")).to_have_attribute(
            "data-status", "suspended", timeout=WAIT_MS)  # fmt: skip
        scan(second)
        expect(result).to_have_attribute("data-outcome", "invalid", timeout=WAIT_MS)
        expect(counter.locator("#qr-message")).to_contain_text("挂失暂停")


def test_the_demo_runs_on_sm2_with_one_setting(tmp_path: Path, pcscd: object) -> None:
    """CARDSVC_SIGNING_ALGORITHM=SM2SM3: every issuer key and the chip's key are SM2, and
    the three things to try work the same."""
    issuer_port, page_port = free_port(), free_port()
    demo = Demo(tmp_path, issuer_port, page_port, CARDSVC_SIGNING_ALGORITHM="SM2SM3")
    try:
        out = demo.wait_ready()
        assert "personalised on the emulated chip (SM2SM3, PIN" in out, out
        keys = httpx.get(f"http://127.0.0.1:{issuer_port}/.well-known/jwks.json").json()["keys"]
        assert keys and {(k["crv"], k["alg"]) for k in keys} == {("SM2", "SM2SM3")}
        code = re.search(r"and code ([0-9A-Z-]+);", out)
        clerk = re.search(r"Demo clerk 李敏: clerk ID (\S+), password (\S+) ", out)
        assert code and clerk, out
        _three_things_to_try(f"http://127.0.0.1:{page_port}",
                             f"http://127.0.0.1:{issuer_port}/wallet", code[1],
                             (clerk[1], clerk[2]))  # fmt: skip
    finally:
        status = demo.stop()
    assert status == 0, demo.output

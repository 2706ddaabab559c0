"""``./dev run``'s demo end to end: ``python -m demo`` in a fresh directory, twice.

Real components: the issuer (SQLite, file key store), pcscd with vpcd, the card emulator
personalised through PC/SC, ``reader-agent serve``. The first run sets everything up and
prints the addresses; one SIGINT (Ctrl-C) stops it all; the second run finds the same
person and card.
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

from tests.live import free_port

pytestmark = pytest.mark.pcscd

ROOT = Path(__file__).resolve().parents[2]
READY = "Three things to try:"


class Demo:
    def __init__(self, workdir: Path, issuer_port: int, page_port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CARDSVC_DEV_MODE": "1",
               "CARDSVC_PORT": str(issuer_port), "READER_AGENT_PORT": str(page_port)}  # fmt: skip
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
        assert "personalised on the emulated chip" in out
        for url in (f"http://127.0.0.1:{issuer_port}/health",
                    f"http://127.0.0.1:{issuer_port}/wallet",
                    f"http://127.0.0.1:{page_port}/"):  # fmt: skip
            assert httpx.get(url, timeout=10).status_code == 200, url
        card = _card_number(out)
        code = re.search(r"and code ([0-9A-Z-]+);", out)
        assert code, out
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
        assert "created" not in out  # the same keys
    finally:
        assert second.stop() == 0, second.output

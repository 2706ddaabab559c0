"""Debian's Chromium driven by Playwright, shared by the browser tests (marker ``browser``).

No browser download: Playwright launches ``/usr/bin/chromium`` (``./dev`` installs it) with
the flags this machine kind needs (no GPU, loopback only). Missing Chromium or Playwright
skips locally and fails in CI, like every service the tests need.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import service_unavailable

CHROMIUM = Path(os.environ.get("CARDSVC_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def fake_camera_args(video: Path) -> list[str]:
    """Chromium flags for a fake camera that plays ``video`` (a ``.y4m`` file, looped),
    granted to every page without a prompt."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]


@contextmanager
def chromium(*, extra_args: list[str] | None = None) -> Iterator[Any]:
    """A headless Chromium browser until the block ends (``extra_args``: more flags, e.g.
    :func:`fake_camera_args`)."""
    if not CHROMIUM.exists():
        service_unavailable(
            f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (./dev test installs it)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, *(extra_args or [])],
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(*, width: int, height: int, locale: str = "zh-CN") -> Iterator[Any]:
    """One page of the given viewport in a fresh browser whose language (Accept-Language,
    ``navigator.language``) is ``locale``."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": width, "height": height},
                                      locale=locale)  # fmt: skip
        try:
            yield context.new_page()
        finally:
            context.close()


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """``name``.png in the test's directory; also in docs/screenshots/ when
    ``CARDSVC_UPDATE_SCREENSHOTS=1`` (the README shows those)."""
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get("CARDSVC_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, DOCS_SCREENSHOTS / target.name)

"""The accessibility check itself: axe-core finds what it should, under the pages' CSP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.axe import assert_accessible, violations
from tests.browser import browser_page

pytestmark = pytest.mark.browser

# As strict as the counter page's and the wallet's: no inline script at all.
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'"
CLEAN = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>测试</title>
</head><body><main><h1>社保卡</h1><p>正常</p><button type="button">确认</button></main></body>
</html>"""
BROKEN = CLEAN.replace("<p>正常</p>", '<img src="/x.png"><button type="button"></button>')


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page(width=800, height=600) as opened:
        yield opened


def _open(page: Any, html: str) -> None:
    page.route("http://axe.test/", lambda route: route.fulfill(
        status=200, body=html, headers={"Content-Type": "text/html; charset=utf-8",
                                        "Content-Security-Policy": CSP}))  # fmt: skip
    page.route("http://axe.test/x.png", lambda route: route.fulfill(status=404))
    page.goto("http://axe.test/")


def test_a_clean_page_has_no_violation_under_a_strict_csp(page: Any) -> None:
    _open(page, CLEAN)
    assert_accessible(page, "clean page")


def test_an_image_without_text_and_an_empty_button_are_found(page: Any) -> None:
    _open(page, BROKEN)
    found = {v["id"]: v for v in violations(page)}
    assert set(found) == {"image-alt", "button-name"}
    assert found["image-alt"]["impact"] == "critical"
    with pytest.raises(AssertionError, match=r"broken page: .*image-alt"):
        assert_accessible(page, "broken page")


def test_enhanced_contrast_finds_text_below_seven_to_one_only_when_asked(page: Any) -> None:
    # #595959 on white is 7.0:1 and passes; #6b6b6b is 5.3:1, AA but not AAA.
    page.route("http://axe.test/grey.css", lambda route: route.fulfill(
        status=200, body="p { color: #6b6b6b; }", headers={"Content-Type": "text/css"}))
    _open(page, CLEAN.replace("</title>", '</title><link rel="stylesheet" href="/grey.css">'))
    assert violations(page) == []
    found = violations(page, enhanced_contrast=True)
    assert [v["id"] for v in found] == ["color-contrast-enhanced"]
    with pytest.raises(AssertionError, match=r"grey: .*color-contrast-enhanced"):
        assert_accessible(page, "grey", enhanced_contrast=True)

"""The message catalogues: every key in every language, no empty text, the same
placeholders, every key the code uses present, and the fallbacks to zh-CN."""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

import wording
from cardsvc.core.qrtoken import Attribute
from reader_agent.check import Outcome, Step, Verdict
from reader_agent.page.qr import CHECKS, PURPOSES
from reader_agent.page.words import REFUSALS

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "wording" / "locales"
#: A complete key as the code spells it ("counter.pin.tries"); a prefix that the code
#: completes at run time ends with "." or "${" and is checked below by enumeration.
_KEY = re.compile(
    r"""["'`]((?:common|format|month|benefit|purpose|counter|wallet|scan)\.[a-z0-9_.-]*[a-z0-9_-])["'`]"""
)
_FILES = re.compile(r"\.(css|html|js)$")
_HTML_KEY = re.compile(r"\{\{t:([a-z]+\.[A-Za-z0-9_.-]+)\}\}")
SOURCES = [
    *sorted((ROOT / "reader_agent" / "page").glob("*.py")),
    *sorted((ROOT / "reader_agent" / "page" / "static").glob("*")),
    ROOT / "cardsvc" / "api" / "routes" / "wallet.py",
    ROOT / "cardsvc" / "api" / "routes" / "scan.py",
    ROOT / "js" / "scan" / "src" / "scan.js",
    *sorted((ROOT / "cardsvc" / "api" / "static").glob("*")),
    *sorted((ROOT / "wording").glob("*.py")),
    ROOT / "wording" / "static" / "i18n.js",
]


#: Every check name an OfflineVerifier verdict can carry (js/verify/src: VerificationError
#: checks, CoreError codes, and the verifier's own status and freshness answers).
SCAN_REASONS = (
    "signature", "expired", "issued-in-future", "not-yet-valid", "purpose", "replayed",
    "revoked", "suspended", "status", "key-unknown", "key-window", "key-purpose", "key",
    "algorithm", "claims", "header", "crit", "typ", "issuer", "slot", "device-signature",
    "device-mismatch", "decode-error", "input-too-large", "stale-bundle", "clock-rollback",
    "no-bundle", "status-missing", "status-stale", "replay-state", "replay-unknown",
)  # fmt: skip


def _po(name: str) -> dict[str, str]:
    with (LOCALES / name).open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle) if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_is_in_every_language_with_a_text_and_the_same_placeholders() -> None:
    zh, en = _po("zh_CN.po"), _po("en.po")
    assert set(zh) == set(en), (set(zh) ^ set(en))
    assert len(zh) > 300
    for key in zh:
        assert zh[key].strip() and en[key].strip(), key
        if key.startswith("format."):
            # Formats pick their parts from what wording.formats and i18n.js supply.
            given = {"amount", "year", "month", "day", "mm", "dd", "hour", "minute",
                     "month_name", "name", "period"}
            assert _fields(zh[key]) | _fields(en[key]) <= given, key
        else:
            assert _fields(zh[key]) == _fields(en[key]), key
        assert re.fullmatch(r"[a-z]+(\.[a-z0-9_-]+)+", key.replace("zh-CN", "zh-cn")), key


def test_every_key_the_code_uses_exists() -> None:
    used: set[str] = set()
    for path in SOURCES:
        source = path.read_text("utf-8")
        used |= {k for k in _KEY.findall(source) if not _FILES.search(k)}
        used |= set(_HTML_KEY.findall(source))
    assert len(used) > 120  # the scan finds the keys (not a vacuous pass)
    missing = {key for key in used if not wording.has(key)}
    assert not missing, sorted(missing)


def test_keys_built_at_run_time_exist() -> None:
    built = [
        *(f"counter.verdict.{v.value}.{part}" for v in Verdict for part in ("meaning", "advice")),
        *(f"counter.refusal.{r}" for r in REFUSALS),
        *(f"counter.qr.check.{c}" for c in CHECKS),
        *(f"purpose.{p}" for p in PURPOSES),
        *(f"counter.step.{s.value}" for s in Step),
        *(f"counter.outcome.{o.value}" for o in Outcome),
        *(f"counter.qr.attribute.{a.name.lower()}" for a in Attribute),
        *(f"counter.phase.{p}" for p in ("absent", "checking", "checked", "pin-ok", "signing",
                                         "done", "ended", "error")),
        *(f"counter.receipt.kind.{k}" for k in ("benefit", "fee")),
        *(f"counter.receipt.mode.{m}" for m in ("online", "offline")),
        *(f"counter.sex.{s}" for s in ("female", "male")),
        *(f"wallet.status.{s}" for s in ("revoked", "replaced", "suspended", "invalid", "active")),
        *(f"wallet.confirm.{a}{part}" for a in ("report-lost", "forget")
          for part in ("", ".heading", ".yes")),
        *(f"month.{n}" for n in range(1, 13)),
        # The scanner page: the reason of each check @cardsvc/verify names in a verdict.
        *(f"scan.reason.{check}" for check in SCAN_REASONS),
        *(f"scan.network.{s}" for s in ("checking", "updated", "unchanged", "offline", "refused")),
        *(f"scan.concession.{n}" for n in (0, 1)),
        *(f"counter.problem.http.{s}.title" for s in (404, 405, 408, 413, "other")),
        *(f"counter.card-state.{s}" for s in ("pending_personalization", "active", "suspended",
                                              "revoked", "expired")),
        *(f"counter.ecard-state.{s}" for s in ("active", "replaced", "revoked")),
        *(f"counter.ecard-via.{v}" for v in ("code", "counter")),
        *(f"counter.loss.{k}.{part}" for k in ("temporary", "formal")
          for part in ("heading", "text", "yes")),
    ]
    assert not [key for key in built if not wording.has(key)]


def test_an_unknown_language_or_a_missing_key_reads_chinese() -> None:
    assert wording.language("fr") == "zh-CN" and wording.language(None) == "zh-CN"
    assert wording.language("en-GB") == "en" and wording.language("zh-Hant-TW") == "zh-CN"
    assert wording.text("fr", "wallet.activate.button") == "激活"
    assert wording.text("en", "wallet.activate.button") == "Activate"
    missing = wording.text("en", "counter.no-such-key")
    assert missing == "（此处文字缺失）"
    assert wording.catalogue_json("klingon")["lang"] == "zh-CN"
    assert wording.messages("xx") == wording.messages("zh-CN")


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, None, "zh-CN"),
    (None, "", "zh-CN"),
    (None, "fr-FR,fr;q=0.9", "zh-CN"),
    (None, "en-US,en;q=0.9", "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "fr, en;q=0.5, zh;q=0.8", "zh-CN"),
    (None, "fr, en;q=0.8, zh;q=0.5", "en"),
    (None, "en;q=0, zh;q=0.1", "zh-CN"),
    (None, "en;q=bogus", "zh-CN"),
    ("en", "zh-CN", "en"),
    ("zh-CN", "en-US", "zh-CN"),
    ("xx", "en-US", "en"),
])  # fmt: skip
def test_the_language_of_a_request(cookie: str | None, header: str | None, expected: str) -> None:
    assert wording.negotiate(cookie=cookie, accept_language=header) == expected


def test_formats() -> None:
    assert wording.money(350_000, "zh-CN") == "¥3,500.00"
    assert wording.money(350_000, "en") == "¥3,500.00"
    assert wording.money(5, "zh-CN") == "¥0.05" and wording.money(-125, "en") == "¥-1.25"
    with pytest.raises(TypeError):
        wording.money(3500.0, "zh-CN")  # type: ignore[arg-type]
    at = datetime(2026, 12, 4, 7, 30, tzinfo=UTC)  # 15:30 in Beijing
    assert wording.beijing(at, "zh-CN") == "2026年12月4日 15:30"
    assert wording.beijing(at, "en") == "2026-12-04 15:30 (Beijing time)"
    late = datetime(2026, 12, 31, 16, 5, tzinfo=UTC)  # already the new year in Beijing
    assert wording.beijing(late, "zh-CN") == "2027年1月1日 00:05"
    with pytest.raises(ValueError):
        wording.beijing(datetime(2026, 1, 1), "zh-CN")
    assert wording.beijing_date(date(1949, 12, 31), "zh-CN") == "1949年12月31日"
    assert wording.benefit("pension", "2026-12", "zh-CN") == "养老金 2026年12月"
    assert wording.benefit("pension", "2026-12", "en") == "Pension, December 2026"
    assert wording.benefit("bonus", "2026-13", "zh-CN") == "其他待遇（bonus） 2026-13"


def test_a_page_template_is_rendered() -> None:
    page = wording.render_html('<html lang="{{lang}}"><p>{{t:counter.receipt.for}}</p>', "en")
    assert page == '<html lang="en"><p>For</p>'
    assert wording.render_html("{{t:counter.receipt.for}}", "fr") == "项目"
    # Escaped for HTML: the manual summary's parentheses pass, markup would not.
    assert wording.render_html("{{t:counter.pin.last-try}}", "en") == (
        "One try left: the cardholder is sure of the PIN")

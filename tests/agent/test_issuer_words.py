"""The issuer's refusals in the clerk's words: every code the counter knows has its own."""

from __future__ import annotations

import pytest

from reader_agent.page.issuer_words import ISSUER_CODES, issuer_reason, issuer_technical
from wording import render


def problem(code: str, detail: str = "") -> dict[str, str]:
    return {"type": f"https://cardsvc.example/problems/{code}", "detail": detail}


@pytest.mark.parametrize("code", sorted(ISSUER_CODES))
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_known_code_has_words_of_its_own(code: str, lang: str) -> None:
    words = render(lang, issuer_reason(problem(code)))
    assert words and "counter.issuer" not in words
    assert words != render(lang, issuer_reason(problem("something-new")))


def test_an_issuer_that_cannot_sign_is_said_in_chinese_with_the_detail_kept_aside() -> None:
    refusal = problem("signing-unavailable", "the signing device is unavailable")
    assert render("zh-CN", issuer_reason(refusal)) == "发卡机构暂时无法签名"
    assert issuer_technical(refusal) == "signing-unavailable: the signing device is unavailable"

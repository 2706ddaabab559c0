"""The wallet page as the issuer renders it: the mode, the developer aids, the words after a
loss report (the issuer's or the catalogue's), and sizes the browser's text size scales."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cardsvc.api.app import create_app
from cardsvc.settings import Settings
from tests.issuer.registry_helpers import registry_services

STATIC = Path(__file__).resolve().parents[2] / "cardsvc" / "api" / "static"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    opened: list[Any] = []

    def build(**fields: Any) -> TestClient:
        services = registry_services(Settings(
            issuer="http://127.0.0.1:8000",
            database_url=f"sqlite:///{tmp_path / f'issuer{len(opened)}.db'}",
            key_dir=tmp_path / "keys",
            key_passphrase="wallet page test",  # type: ignore[arg-type]
            **fields,
        ))  # fmt: skip
        opened.append(services)
        return TestClient(create_app(services.settings, services=services))

    yield build
    for services in opened:
        services.engine.dispose()


def _page(client: TestClient, **cookies: str) -> str:
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value)
    answer = client.get("/wallet")
    assert answer.status_code == 200
    assert "{{" not in answer.text  # every placeholder filled
    return answer.text


def test_the_qr_text_is_a_developer_aid_off_by_default(make: Any) -> None:
    page = _page(make())
    assert 'id="qr-text' not in page and "developer-aids" not in page
    aided = _page(make(wallet_developer_aids=True))
    assert 'id="qr-text-box"' in aided and 'id="qr-text"' in aided
    assert "developer-aids" not in aided  # the markers go, the box stays


def test_the_mode_is_the_browsers_remembered_choice(make: Any) -> None:
    client = make()
    assert '<html lang="zh-CN" data-i18n="/wallet/i18n/" data-mode="standard">' in _page(client)
    assert 'data-mode="care"' in _page(client, cardsvc_wallet_mode="care")
    # Anything else is the standard mode (and never reaches the page).
    odd = _page(client, cardsvc_wallet_mode='care" onload="x')
    assert 'data-mode="standard"' in odd and "onload" not in odd


def test_the_next_steps_after_a_loss_report(make: Any) -> None:
    client = make()
    zh = _page(client)
    assert "请携带身份证到就近的社保服务大厅补办，或拨打 12333 社保服务热线。" in zh
    assert '<a id="hotline" class="button" href="tel:12333">拨打 12333</a>' in zh
    en = _page(client, cardsvc_lang="en")
    assert "or call the social security hotline 12333." in en
    assert ">Call 12333</a>" in en
    assert "请携带" not in en

    # The issuer's own words, per language; a language it did not write reads the
    # catalogue's (with its hotline).
    own = make(wallet_hotline="0755-123 45",
               wallet_loss_next_steps={"zh-CN": "请到福田区社保服务大厅<补办>。"})  # fmt: skip
    zh = _page(own)
    assert "请到福田区社保服务大厅&lt;补办&gt;。" in zh  # escaped
    assert 'href="tel:075512345">拨打 0755-123 45</a>' in zh
    assert "or call the social security hotline 0755-123 45." in _page(own, cardsvc_lang="en")


@pytest.mark.parametrize("fields", [
    {"wallet_loss_next_steps": {"fr": "Allez au guichet."}},
    {"wallet_loss_next_steps": {"zh-CN": "  "}},
    {"wallet_loss_next_steps": {"en": "x" * 501}},
    {"wallet_hotline": "javascript:alert(1)"},
    {"wallet_hotline": ""},
])  # fmt: skip
def test_bad_wallet_settings_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**fields)


def test_wallet_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDSVC_WALLET_DEVELOPER_AIDS", "true")
    monkeypatch.setenv("CARDSVC_WALLET_LOSS_NEXT_STEPS", '{"en": "Visit hall 3."}')
    settings = Settings()
    assert settings.wallet_developer_aids is True
    assert settings.wallet_loss_next_steps == {"en": "Visit hall 3."}


def test_sizes_follow_the_browsers_text_size() -> None:
    # No px font sizes and no fixed size on <html>: rem and em only.
    css = (STATIC / "wallet.css").read_text("utf-8")
    sizes = re.findall(r"font-size:\s*([^;}]+)", css)
    assert sizes and all(not re.search(r"\d(px|pt)\b", s) for s in sizes), sizes
    assert not re.search(r"(^|\})\s*html\s*\{[^}]*font-size", css)
    assert not re.search(r"min-height:\s*\d+px", css)


def test_the_activation_qr_is_drawn_for_an_activation_text_only(make: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from cardsvc.core.keys import VerifyingKey
    from cardsvc.core.pairing import activation_text
    from cardsvc.ecards.render import render

    client = make()
    key = VerifyingKey(public_key=ec.generate_private_key(ec.SECP256R1()).public_key())
    text = activation_text(key)
    answer = client.get("/wallet/activation-qr.svg", params={"text": text})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/svg+xml"
    # The QR code of exactly that text (the browser test scans it off the screen).
    assert answer.content == render(text, "svg")
    for bad in ("SSC1:NCFOXN%TS3DH", "SSCA1:" + "A" * 43 + "." + "A" * 43, "hello", ""):
        refused = client.get("/wallet/activation-qr.svg", params={"text": bad})
        assert refused.status_code == 400, refused.text  # malformed input, as for any code
        assert refused.json()["type"].endswith("decode-error")
    too_long = client.get("/wallet/activation-qr.svg", params={"text": "SSCA1:" + "A" * 300})
    assert too_long.status_code == 422 and "A" * 100 not in too_long.text

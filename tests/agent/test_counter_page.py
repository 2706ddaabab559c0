"""The counter page's HTTP surface without a card reader: security checks, problem+json
for every bad input (hypothesis), the PIN never echoed, and the clerk's words.

The app is built without its background threads (no watcher, no issuer link), against an
issuer address where nothing listens, so every card step answers "no card" and every
issuer call "unreachable" — the answers a real counter gives in those states.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cardsvc.core.signing import LocalSigner
from reader_agent.cli import app as cli_app
from reader_agent.counter import CounterRefusedError
from reader_agent.issuer import IssuerClient
from reader_agent.page.app import PageConfig, create_app
from reader_agent.page.security import NotLoopbackError, require_loopback
from reader_agent.page.views import mask_citizen_id, yuan
from reader_agent.page.words import REFUSALS, explain
from tests.latin import latin_words
from wording import render

PORT = 8100
HOST = f"127.0.0.1:{PORT}"
TOKEN = "test-csrf-token"
DEAD_ISSUER = "http://127.0.0.1:9"  # discard port: connection refused
POSTS = ("/api/check", "/api/pin", "/api/collect", "/api/pay", "/api/qr", "/api/done",
         "/api/sync")  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    root = tmp_path_factory.mktemp("page")
    issuer = IssuerClient(DEAD_ISSUER, client_id="term-test",
                          signer=LocalSigner(ec.generate_private_key(ec.SECP256R1())))  # fmt: skip
    config = PageConfig(state_dir=root / "state", cache_dir=root / "cache", port=PORT,
                        csrf_token=TOKEN)  # fmt: skip
    return TestClient(create_app(config, issuer=issuer, background=False),
                      base_url=f"http://{HOST}")  # fmt: skip


def _post(client: TestClient, path: str, content: bytes, **headers: str) -> Any:
    return client.post(path, content=content, headers={
        "Content-Type": "application/json", "X-CSRF-Token": TOKEN,
        "Origin": f"http://{HOST}", **headers})  # fmt: skip


def _is_problem(response: Any) -> None:
    assert response.headers["content-type"].startswith("application/problem+json"), response
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["detail"] and "next" in body


def test_the_page_carries_its_token_and_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert f'content="{TOKEN}"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/static/counter.js").status_code == 200
    assert client.get("/static/counter.css").status_code == 200
    state = client.get("/api/state").json()
    assert state["card"] == {"present": False, "phase": "absent"}
    assert state["terminal"] == "term-test"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8100", "127.0.0.1:8101",
                                  "192.168.1.5:8100", ""])  # fmt: skip
def test_other_host_names_are_refused(client: TestClient, host: str) -> None:
    # DNS rebinding: a hostile name pointed at 127.0.0.1 reaches us with its own Host.
    for response in (client.get("/", headers={"Host": host}),
                     client.get("/api/state", headers={"Host": host})):  # fmt: skip
        assert response.status_code == 421
        _is_problem(response)


def test_localhost_names_are_served(client: TestClient) -> None:
    for host in (f"localhost:{PORT}", f"[::1]:{PORT}"):
        assert client.get("/api/state", headers={"Host": host}).status_code == 200


def test_posts_need_the_token_and_the_same_origin(client: TestClient) -> None:
    body = b"{}"
    no_token = client.post("/api/done", content=body,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert no_token.status_code == 403
    _is_problem(no_token)
    wrong = _post(client, "/api/done", body, **{"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    cross = _post(client, "/api/done", body, Origin="http://evil.example")
    assert cross.status_code == 403 and cross.json()["type"].endswith("cross-origin")
    # Token and own origin: through to the desk (here: nothing to end, answered).
    assert _post(client, "/api/done", body).status_code == 200


def test_a_large_body_is_refused(client: TestClient) -> None:
    response = _post(client, "/api/qr", json.dumps({"text": "x" * 20_000,
                                                    "purpose": "identity"}).encode())  # fmt: skip
    assert response.status_code == 413
    _is_problem(response)


def test_the_pin_is_never_echoed(client: TestClient) -> None:
    for body in ({"pin": 987654321}, {"pin": "987654321", "extra": "987654321"},
                 {"pin": "9876543219876543219876543219876543"},
                 {"pin": ["987654321"]}):  # fmt: skip
        response = _post(client, "/api/pin", json.dumps(body).encode())
        assert response.status_code == 422, response.text
        assert "987654321" not in response.text
        _is_problem(response)
    # Well formed, but no card: refused in plain words, PIN not repeated.
    response = _post(client, "/api/pin", b'{"pin": "987654"}')
    assert response.status_code == 409
    assert "987654" not in response.text
    assert response.json()["type"].endswith("no-card")


_COLLECT = {"entitlement_id": "7f1d2a64-9c3e-4d5b-8a7f-0e1c2b3a4d5e", "amount_fen": 350000}
_PAY = {"amount_fen": 2550, "reference": "BILL-1"}


def test_card_steps_without_a_card_say_what_to_do(client: TestClient) -> None:
    response = _post(client, "/api/check", b"{}")
    assert response.status_code == 409, response.text
    _is_problem(response)
    # Chinese unless asked otherwise; English by Accept-Language.
    assert response.json()["next"] == "请插卡，核验会自动开始。"
    english = _post(client, "/api/check", b"{}", **{"Accept-Language": "en-US"})
    assert english.json()["next"] == "Insert the card; the check starts by itself."
    listing = client.get("/api/entitlements")
    assert listing.status_code == 409
    _is_problem(listing)


def test_money_moves_only_with_a_clerk_signed_in(client: TestClient) -> None:
    # The clerk's name goes on every receipt: nobody signed in, nothing reaches the card.
    for path, body in (("/api/collect", _COLLECT), ("/api/pay", _PAY)):
        response = _post(client, path, json.dumps(body).encode())
        assert response.status_code == 401, response.text
        _is_problem(response)
        assert response.json()["type"] == "urn:cardsvc:counter:clerk-needed"


def test_without_a_clerk_required_card_steps_say_what_to_do(tmp_path: Path) -> None:
    issuer = IssuerClient(DEAD_ISSUER, client_id="term-test",
                          signer=LocalSigner(ec.generate_private_key(ec.SECP256R1())))  # fmt: skip
    config = PageConfig(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", port=PORT,
                        csrf_token=TOKEN, require_clerk=False)  # fmt: skip
    open_client = TestClient(create_app(config, issuer=issuer, background=False),
                             base_url=f"http://{HOST}")  # fmt: skip
    for path, body in (("/api/collect", _COLLECT), ("/api/pay", _PAY)):
        response = _post(open_client, path, json.dumps(body).encode())
        assert response.status_code == 409, response.text
        _is_problem(response)
        assert response.json()["next"] == "请插卡，核验会自动开始。"


def test_a_qr_code_without_the_issuer_is_plainly_not_verified(client: TestClient) -> None:
    response = _post(client, "/api/qr", b'{"text": "SSC1:6BFOXN*TS0BI$ZD.P9", '
                                        b'"purpose": "identity"}')  # fmt: skip
    assert response.status_code == 200
    answer = response.json()
    assert answer["outcome"] == "unverified"
    assert answer["message"].startswith("未核验：无法连接发卡机构")
    english = _post(client, "/api/qr", b'{"text": "SSC1:6BFOXN*TS0BI$ZD.P9", '
                    b'"purpose": "identity"}', Cookie="cardsvc_lang=en").json()  # fmt: skip
    assert english["message"].startswith("NOT VERIFIED")


def test_unknown_paths_and_methods_are_problems(client: TestClient) -> None:
    for response in (client.get("/api/nothing"), client.get("/api/pin"),
                     _post(client, "/api/state", b"{}")):  # fmt: skip
        assert response.status_code in (404, 405)
        _is_problem(response)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["pin", "text", "purpose", "amount_fen", "reference",
                                       "entitlement_id", "allow_last_try", "x"]) | st.text(
                                           max_size=8), children, max_size=5),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(POSTS), body=_json)
def test_any_json_body_gets_an_answer_not_a_crash(
    client: TestClient, path: str, body: object
) -> None:
    response = _post(client, path, json.dumps(body).encode())
    assert response.status_code in (200, 202, 400, 409, 413, 422), (path, body, response.text)
    if response.status_code >= 400:
        _is_problem(response)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(POSTS), raw=st.binary(max_size=200))
def test_any_bytes_get_an_answer_not_a_crash(client: TestClient, path: str, raw: bytes) -> None:
    response = _post(client, path, raw)
    assert response.status_code in (200, 202, 400, 409, 422), (path, raw, response.text)
    if response.status_code >= 400:
        _is_problem(response)


def test_loopback_only() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        require_loopback(host)
    for host in ("0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "counter.example", ""):  # noqa: S104
        with pytest.raises(NotLoopbackError):
            require_loopback(host)


def test_serve_refuses_a_network_address(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("unused")
    done = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--client-id", "t",  # noqa: S104
                                        "--client-key", str(key)])  # fmt: skip
    assert done.exit_code != 0
    assert "not a loopback address" in str(done.exception)


def test_the_clerk_reads_plain_words() -> None:
    assert mask_citizen_id("11010519491231002X") == "110105********002X"
    assert yuan(350_000) == "3,500.00" and yuan(5) == "0.05"
    for reason in REFUSALS:
        words = explain(CounterRefusedError("x", reason=reason))
        assert words.status == 409 and "Nothing was signed or paid" in render("en", words.detail)
        assert render("zh-CN", words.detail).endswith("未签名，也未付款。")
        assert render("en", words.next) and render("zh-CN", words.next)


def test_the_page_is_chinese_by_default_and_english_when_asked(client: TestClient) -> None:
    chinese = client.get("/")
    assert '<html lang="zh-CN"' in chinese.text
    assert "<title>柜台 — 社会保障卡</title>" in chinese.text
    assert "{{" not in chinese.text
    for headers in ({"Accept-Language": "en-GB,en;q=0.9"}, {"Cookie": "cardsvc_lang=en"}):
        english = client.get("/", headers=headers)
        assert '<html lang="en"' in english.text and "<h1>Counter</h1>" in english.text
    # The browser's remembered choice wins over its Accept-Language; nonsense reads Chinese.
    assert '<html lang="zh-CN"' in client.get("/", headers={
        "Cookie": "cardsvc_lang=zh-CN", "Accept-Language": "en"}).text  # fmt: skip
    assert '<html lang="zh-CN"' in client.get("/", headers={"Accept-Language": "xx"}).text
    assert client.get("/static/i18n.js").status_code == 200
    catalogue = client.get("/i18n/en.json").json()
    assert catalogue["lang"] == "en" and catalogue["messages"]["counter.receipt.for"] == "For"
    fallback = client.get("/i18n/tlh.json").json()
    assert fallback["lang"] == "zh-CN" and fallback["messages"]["counter.receipt.for"] == "项目"


def test_refusals_before_the_page_are_in_the_request_language(client: TestClient) -> None:
    refused = client.get("/api/state", headers={"Host": "evil.example"})
    assert refused.json()["title"] == "主机名不对"
    english = client.get("/api/state", headers={"Host": "evil.example", "Accept-Language": "en"})
    assert english.json()["title"] == "Wrong host name"


def test_the_mode_for_the_elderly_is_the_browsers_remembered_choice(client: TestClient) -> None:
    assert 'data-mode="standard"' in client.get("/").text
    care = client.get("/", headers={"Cookie": "cardsvc_counter_mode=care"})
    assert 'data-mode="care"' in care.text
    odd = client.get("/", headers={"Cookie": 'cardsvc_counter_mode="><script>'}).text
    assert 'data-mode="standard"' in odd and "<script>" not in odd.split("<head>")[0]


# -- no English inside the Chinese messages --------------------------------------------------

#: Bad requests of every kind pydantic refuses: each field named in the clerk's words.
BAD_BODIES = [
    ("/api/pay", {"amount_fen": 0, "reference": "not a reference!"}, ["金额", "缴费单号"]),
    ("/api/collect", {"entitlement_id": "nope", "amount_fen": "a lot"}, ["待遇编号", "金额"]),
    ("/api/pin", {}, ["密码（未填写）"]),
    ("/api/pin", {"pin": "1" * 40, "extra": True}, ["密码（太长）", "某一项（不应出现）"]),
    ("/api/qr", {"text": "SSC1:X", "purpose": "lunch"}, ["用途（不是可选的值）"]),
    ("/api/ecards/counter-activation", {"device_jwk": {"kty": "RSA", "n": "x"}}, ["手机的公钥"]),
    ("/api/clerk/sign-in", {"client_id": "a b", "password": ""}, ["柜员编号", "柜员密码"]),
]


@pytest.mark.parametrize(("path", "body", "named"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_invalid_input_is_said_in_chinese_with_the_english_folded_away(
    client: TestClient, path: str, body: dict[str, Any], named: list[str]
) -> None:
    zh = _post(client, path, json.dumps(body).encode(), **{"Accept-Language": "zh-CN"})
    assert zh.status_code == 422, zh.text
    problem = zh.json()
    words = " ".join((problem["title"], problem["detail"], problem["next"]))
    assert latin_words(words) == [], words
    assert problem["detail"].startswith("部分输入内容无效：")
    for name in named:
        assert name in problem["detail"], problem["detail"]
    # pydantic's own words are kept for support, beside (never inside) the message.
    assert latin_words(problem["technical"]), problem["technical"]
    assert "1" * 40 not in zh.text  # the input itself is never echoed
    en = _post(client, path, json.dumps(body).encode(), **{"Accept-Language": "en"})
    assert en.json()["detail"].startswith("Some of what was entered is not valid: ")


ISSUER_PROBLEMS = [
    {"type": "https://cardsvc.example/problems/illegal-transition", "status": 409,
     "detail": "cannot report_loss a card in state revoked", "state": "revoked"},
    {"type": "https://cardsvc.example/problems/transaction-refused", "status": 422,
     "detail": "entitlement 1f0e is not open"},
    {"type": "https://cardsvc.example/problems/brand-new-code", "status": 409,
     "detail": "something the counter has never heard of"},
    {"title": "Internal Server Error"},
    "not even a problem document",
]  # fmt: skip


@pytest.mark.parametrize("problem", ISSUER_PROBLEMS)
def test_the_issuers_english_never_reaches_a_chinese_message(problem: object) -> None:
    from reader_agent.errors import IssuerError
    from reader_agent.page.clerk import _issuer_words

    error = IssuerError("issuer said 409: cannot report_loss", status=409, problem=problem)
    for words in (explain(error), _issuer_words(error, "zh-CN", not_found="person.not-found")):
        said = words.problem("zh-CN")
        text = " ".join((said["title"], said["detail"], said["next"]))
        assert latin_words(text) == [], text
        assert said["technical"]  # the issuer's own words, for support
        assert latin_words(" ".join(words.problem("en")[k] for k in ("title", "detail")))


def test_the_card_stacks_english_never_reaches_a_chinese_message() -> None:
    from reader_agent.cache import CacheError
    from reader_agent.errors import (
        AgentError,
        ApduError,
        CardProtocolError,
        InvalidPinFormatError,
        ReaderError,
    )
    from reader_agent.journal import JournalError

    errors: list[AgentError] = [
        ApduError("INTERNAL AUTHENTICATE refused: 6985 conditions not satisfied",
                  sw=0x6985, command="INTERNAL AUTHENTICATE"),
        CardProtocolError("card document is not valid UTF-8"),
        ReaderError("SCardTransmit failed: SCARD_E_COMM_DATA_LOST", operation="SCardTransmit"),
        InvalidPinFormatError("PIN must have 6 to 12 digits, got 4"),
        CacheError("trust list signature does not verify", check="trust-list"),
        JournalError("record 7 hash does not chain", check="chain"),
        CounterRefusedError("offline floor limit 500000 exceeded", reason="floor-limit"),
        AgentError("something odd"),
    ]  # fmt: skip
    for error in errors:
        said = explain(error).problem("zh-CN")
        text = " ".join((said["title"], said["detail"], said["next"]))
        assert latin_words(text) == [], (type(error).__name__, text)
        assert said["technical"] == error.detail

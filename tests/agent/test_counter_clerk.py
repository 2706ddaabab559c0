"""The clerk's work on the counter page, over HTTP: the agent's page app under uvicorn,
the real issuer under uvicorn (SQLite, file key store), clerks enrolled with
``reader-agent clerk add`` and registered at the issuer as operator clients.

No card reader here (the app runs without its watcher): signing in and out, the lock-out,
the idle timeout, looking a person up, loss reports, a resume refused without the card,
e-card activation codes, and an auditor's refusal. The audit actor of every change is the
clerk's own client id.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import reader_agent.page
import wording
from cardsvc.api.app import create_app as create_issuer_app
from cardsvc.auth.clients import ClientKind
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.db.migrate import upgrade
from cardsvc.db.states import Role
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from reader_agent.clerks import MAX_FAILURES
from reader_agent.cli import app as cli
from reader_agent.issuer import IssuerClient
from reader_agent.page.app import PageConfig
from reader_agent.page.app import create_app as create_page_app
from reader_agent.page.server import PageServer
from tests.agent.issuer_calls import operator_call
from tests.live import free_port, serving

CITIZEN_ID = "440524188001010014"
PASSWORD = "correct horse 42"
AUDITOR_PASSWORD = "auditor pass 42"
TOKEN = "clerk-test-csrf"


@dataclass
class Issuer:
    base: str
    services: Services

    def call(self, method: str, path: str, body: dict[str, Any] | None, *scopes: str) -> Any:
        return operator_call(self.services, self.base, method, path, body, *scopes)

    def events(self, card_number: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET", f"/v1/cards/{card_number}/events", None,
                                                "cards:read")["items"]  # fmt: skip
        return items


@dataclass
class Page:
    http: httpx.Client
    issuer: Issuer
    clerk_id: str
    auditor_id: str
    person_id: str
    card_number: str
    state_dir: Path
    clock: list[datetime]

    def post(self, path: str, body: Any = None, *, lang: str | None = None,
             raw: bytes | None = None) -> httpx.Response:  # fmt: skip
        headers = {"Content-Type": "application/json", "X-CSRF-Token": TOKEN,
                   "Origin": str(self.http.base_url).rstrip("/")}  # fmt: skip
        if lang is not None:
            headers["Accept-Language"] = lang
        content = raw if raw is not None else json.dumps({} if body is None else body).encode()
        return self.http.post(path, content=content, headers=headers)

    def sign_in(self, client_id: str | None = None, password: str = PASSWORD,
                lang: str | None = None) -> httpx.Response:  # fmt: skip
        return self.post("/api/clerk/sign-in",
                         {"client_id": client_id or self.clerk_id, "password": password},
                         lang=lang)  # fmt: skip


def _operator(services: Services, tmp_path: Path, name: str, role: Role) -> tuple[str, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / f"{name}.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    client = services.clients.register(kind=ClientKind.OPERATOR, display_name=name, role=role,
                                       jwk=public_jwk(key.public_key()), created_by="test",
                                       now=utcnow())  # fmt: skip
    return client.client_id, key_file


def _enrol(state_dir: Path, client_id: str, name: str, key_file: Path, password: str) -> None:
    done = CliRunner().invoke(cli, ["clerk", "add", "--client-id", client_id, "--name", name,
                                    "--key-file", str(key_file), "--state-dir", str(state_dir)],
                              input=f"{password}\n{password}\n")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert password not in done.output


@pytest.fixture
def page(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    idle: timedelta = getattr(request, "param", {}).get("clerk_idle", timedelta(minutes=15))
    port = free_port()
    settings_ = Settings(
        issuer=f"http://127.0.0.1:{port}", database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys", key_passphrase="clerk test",  # type: ignore[arg-type]
    )  # fmt: skip
    services = Services.from_settings(settings_)
    upgrade(services.engine)  # first, so the key events reach the audit log
    services.keys.init(now=utcnow() - timedelta(hours=1))
    with serving(create_issuer_app(settings_, services=services), port):
        issuer = Issuer(base=settings_.issuer, services=services)
        person = issuer.call("POST", "/v1/persons", {"citizen_id": CITIZEN_ID, "name": "李四"},
                             "persons:write")  # fmt: skip
        card = issuer.call("POST", f"/v1/persons/{person['id']}/cards", {"reason": "new card"},
                           "cards:write")  # fmt: skip
        chip = ec.generate_private_key(ec.SECP256R1()).public_key()
        issuer.call("POST", f"/v1/cards/{card['card_number']}/personalization",
                    {"chip_jwk": public_jwk(chip)}, "cards:personalize")  # fmt: skip
        state_dir = tmp_path / "state"
        clerk_id, clerk_key = _operator(services, tmp_path, "王芳", Role.CLERK)
        _enrol(state_dir, clerk_id, "王芳", clerk_key, PASSWORD)
        auditor_id, auditor_key = _operator(services, tmp_path, "赵审计", Role.AUDITOR)
        _enrol(state_dir, auditor_id, "赵审计", auditor_key, AUDITOR_PASSWORD)
        terminal_key = ec.generate_private_key(ec.SECP256R1())
        terminal = services.clients.register(
            kind=ClientKind.TERMINAL, display_name="counter 3",
            jwk=public_jwk(terminal_key.public_key()), created_by="test", now=utcnow(),
        )  # fmt: skip
        clock = [datetime.now(UTC)]
        page_port = free_port()
        config = PageConfig(state_dir=state_dir, cache_dir=tmp_path / "cache", port=page_port,
                            csrf_token=TOKEN, clerk_idle=idle)  # fmt: skip
        client = IssuerClient(issuer.base, client_id=terminal.client_id,
                              signer=LocalSigner(terminal_key))  # fmt: skip
        app = create_page_app(config, issuer=client, clock=lambda: clock[0], background=False)
        server = PageServer(app, host="127.0.0.1", port=page_port)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "page did not start"
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{page_port}", timeout=30) as http:
                yield Page(http=http, issuer=issuer, clerk_id=clerk_id, auditor_id=auditor_id,
                           person_id=str(person["id"]), card_number=card["card_number"],
                           state_dir=state_dir, clock=clock)  # fmt: skip
        finally:
            server.stop()
            thread.join(15)
    services.engine.dispose()


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:cardsvc:counter:{code}", body
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def _chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


# -- signing in and out -----------------------------------------------------------------


def test_a_clerk_signs_in_and_out_and_the_page_shows_who(page: Page) -> None:
    assert page.http.get("/api/state").json()["clerk"] is None
    signed = page.sign_in()
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["clerk"]["client_id"] == page.clerk_id
    assert body["clerk"]["name"] == "王芳" and body["clerk"]["online"] is True
    assert body["title"] == "已登录" and "王芳" in body["detail"]
    state = page.http.get("/api/state").json()
    assert state["clerk"]["name"] == "王芳"
    out = page.post("/api/clerk/sign-out")
    assert out.status_code == 200
    assert out.json()["signed_out"] is True and out.json()["state"]["clerk"] is None
    assert page.http.get("/api/state").json()["clerk"] is None
    # Signed out: the clerk's work is refused until someone signs in again.
    refused = page.post("/api/persons/lookup", {"citizen_id": CITIZEN_ID})
    body = _problem(refused, 401, "clerk-needed")
    assert body["title"] == "请先登录"


def test_a_wrong_password_is_refused_counted_and_locks(
    page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not the password"
    for left in range(MAX_FAILURES - 1, 0, -1):
        body = _problem(page.sign_in(password=wrong), 401, "clerk-signin-wrong-password")
        assert body["tries_left"] == left and str(left) in body["detail"]
        assert _chinese(body["title"]) and wrong not in json.dumps(body)
    locked = _problem(page.sign_in(password=wrong), 423, "clerk-signin-locked")
    assert "锁定" in locked["title"]
    # Locked: even the right password is not tried, and nobody is signed in.
    _problem(page.sign_in(), 423, "clerk-signin-locked")
    assert page.http.get("/api/state").json()["clerk"] is None
    # The lock ends after its time; the right password then signs in and resets the count.
    page.clock[0] += timedelta(minutes=16)
    assert page.sign_in().status_code == 200
    body = _problem(page.sign_in(password=wrong), 401, "clerk-signin-wrong-password")
    assert body["tries_left"] == MAX_FAILURES - 1
    # The password never reaches a log or the clerk file.
    assert wrong not in caplog.text and PASSWORD not in caplog.text
    for path in (page.state_dir / "clerks").iterdir():
        assert PASSWORD.encode() not in path.read_bytes()


def test_an_unknown_clerk_and_a_wrong_password_read_the_same(page: Page) -> None:
    unknown = _problem(page.sign_in(client_id="oper-000000000000"), 401,
                       "clerk-signin-wrong-password")  # fmt: skip
    wrong = _problem(page.sign_in(password="wrong password"), 401, "clerk-signin-wrong-password")
    assert unknown["title"] == wrong["title"]


def test_english_when_the_browser_asks_for_it(page: Page) -> None:
    body = _problem(page.sign_in(password="nope nope", lang="en-US,en;q=0.9"), 401,
                    "clerk-signin-wrong-password")  # fmt: skip
    assert body["title"] == "Wrong clerk ID or password"
    assert page.sign_in(lang="en").json()["title"] == "Signed in"
    # Anything else (or nothing): Chinese.
    assert page.sign_in(lang="fr-FR").json()["title"] == "已登录"


def test_an_idle_clerk_is_signed_out(page: Page) -> None:
    assert page.sign_in().status_code == 200
    page.clock[0] += timedelta(minutes=16)
    assert page.http.get("/api/state").json()["clerk"] is None
    body = _problem(page.post("/api/persons/lookup", {"citizen_id": CITIZEN_ID}), 401,
                    "clerk-expired")  # fmt: skip
    assert body["title"] == "登录已超时"


@pytest.mark.parametrize("page", [{"clerk_idle": timedelta(seconds=1)}], indirect=True)
def test_an_idle_clerk_is_signed_out_without_a_request(page: Page) -> None:
    assert page.sign_in().status_code == 200
    page.clock[0] += timedelta(seconds=2)  # the page's clock: past the idle time
    # Only the page's event stream is read (it asks nothing of the clerk's sign-in): the
    # sign-out comes from the agent itself, pushed to the page.
    deadline = time.monotonic() + 15
    with page.http.stream("GET", "/api/events", timeout=20) as events:
        for line in events.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["clerk"] is None:
                break
            assert time.monotonic() < deadline, "the idle clerk was not signed out"
    assert page.http.get("/api/state").json()["clerk"] is None


def test_a_suspended_clerk_cannot_sign_in(page: Page) -> None:
    page.issuer.services.clients.set_active(page.clerk_id, active=False)
    body = _problem(page.sign_in(), 403, "clerk-signin-refused")
    assert _chinese(body["title"])
    assert page.http.get("/api/state").json()["clerk"] is None


# -- looking a person up ------------------------------------------------------------------


def test_look_a_person_up_by_id_number(page: Page) -> None:
    page.issuer.call("POST", f"/v1/persons/{page.person_id}/entitlements",
                     {"benefit": "pension", "period": "2026-12", "amount_fen": 350_000},
                     "entitlements:write")  # fmt: skip
    assert page.sign_in().status_code == 200
    found = page.post("/api/persons/lookup", {"citizen_id": CITIZEN_ID})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["person"]["name"] == "李四"
    assert body["person"]["citizen_id_masked"] == "440524********0014"
    assert CITIZEN_ID not in found.text
    assert [c["card_number"] for c in body["cards"]] == [page.card_number]
    assert body["cards"][0]["state"] == "active"
    assert body["ecards"] == []
    assert [(e["benefit"], e["period"], e["amount_yuan"]) for e in body["entitlements"]] == [
        ("pension", "2026-12", "3,500.00")
    ]


def test_a_bad_or_unknown_id_number_is_a_plain_refusal(page: Page) -> None:
    assert page.sign_in().status_code == 200
    bad = _problem(page.post("/api/persons/lookup", {"citizen_id": "440524188001010015"}), 422,
                   "clerk-person-invalid-id")  # fmt: skip
    assert "440524188001010015" not in json.dumps(bad)
    unknown = _problem(page.post("/api/persons/lookup", {"citizen_id": "11010519491231002X"}),
                       404, "clerk-person-not-found")  # fmt: skip
    assert unknown["title"] == "查无此人"


# -- card status changes -------------------------------------------------------------------


def test_a_loss_report_at_the_counter_goes_in_the_clerks_name(page: Page) -> None:
    assert page.sign_in().status_code == 200
    done = page.post(f"/api/cards/{page.card_number}/loss-report", {"formal": False})
    assert done.status_code == 200, done.text
    assert done.json()["card"]["state"] == "suspended"
    assert done.json()["title"] == "已挂失"
    last = page.issuer.events(page.card_number)[-1]
    assert (last["to_state"], last["actor"]) == ("suspended", page.clerk_id)
    # Suspended already: a second temporary report is refused in plain words, nothing changes.
    before = page.issuer.events(page.card_number)
    again = _problem(page.post(f"/api/cards/{page.card_number}/loss-report", {}), 409,
                     "clerk-card-wrong-state")  # fmt: skip
    assert _chinese(again["title"])
    assert page.issuer.events(page.card_number) == before
    # A formal report: revoked for good, again in the clerk's name.
    formal = page.post(f"/api/cards/{page.card_number}/loss-report", {"formal": True})
    assert formal.json()["card"]["state"] == "revoked"
    last = page.issuer.events(page.card_number)[-1]
    assert (last["to_state"], last["actor"]) == ("revoked", page.clerk_id)


def test_resume_needs_the_card_checked_in_the_reader(page: Page) -> None:
    assert page.sign_in().status_code == 200
    assert page.post(f"/api/cards/{page.card_number}/loss-report", {}).status_code == 200
    before = page.issuer.events(page.card_number)
    body = _problem(page.post(f"/api/cards/{page.card_number}/resume"), 409,
                    "clerk-card-not-checked")  # fmt: skip
    assert page.card_number in body["detail"]
    assert page.issuer.events(page.card_number) == before


def test_an_auditor_signed_in_is_refused_and_nothing_happens(page: Page) -> None:
    assert page.sign_in(client_id=page.auditor_id, password=AUDITOR_PASSWORD).status_code == 200
    before = page.issuer.events(page.card_number)
    body = _problem(page.post(f"/api/cards/{page.card_number}/loss-report", {"formal": True}),
                    403, "clerk-forbidden")  # fmt: skip
    assert body["title"] == "无权办理" and "未做任何更改" in body["detail"]
    assert page.issuer.events(page.card_number) == before
    _problem(page.post(f"/api/persons/{page.person_id}/ecard-activation-codes"), 403,
             "clerk-forbidden")  # fmt: skip
    # An auditor may read: the look-up works.
    assert page.post("/api/persons/lookup", {"citizen_id": CITIZEN_ID}).status_code == 200


# -- e-card activation codes --------------------------------------------------------------


def test_an_activation_code_for_the_person(page: Page) -> None:
    assert page.sign_in().status_code == 200
    issued = page.post(f"/api/persons/{page.person_id}/ecard-activation-codes")
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["code"] and body["attempts"] > 0 and body["title"] == "已生成激活码"
    assert "北京时间" in body["detail"]
    # The holder activates with it on the phone; the counter's look-up then shows the e-card.
    phone = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        f"{page.issuer.base}/v1/ecards/activations", method="POST",
        data=json.dumps({"citizen_id": CITIZEN_ID, "code": body["code"],
                         "device_jwk": phone}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        ecard = json.load(answer)
    found = page.post("/api/persons/lookup", {"citizen_id": CITIZEN_ID}).json()
    assert [(e["ecard_id"], e["state"], e["activated_via"]) for e in found["ecards"]] == [
        (ecard["ecard_id"], "active", "code")]  # fmt: skip
    unknown = page.post("/api/persons/00000000-0000-4000-8000-000000000000/"
                        "ecard-activation-codes")  # fmt: skip
    _problem(unknown, 404, "clerk-person-not-found")


# -- bad input ------------------------------------------------------------------------------

_NEW_POSTS = ("/api/clerk/sign-in", "/api/clerk/sign-out", "/api/persons/lookup",
              "/api/persons/not-a-uuid/ecard-activation-codes",
              "/api/cards/A12345678/resume", "/api/cards/A12345678/loss-report",
              "/api/cards/%00bad/loss-report")  # fmt: skip


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=6,
)
_BODIES = st.binary(max_size=64) | st.builds(lambda v: json.dumps(v).encode(), _JSON)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(path=st.sampled_from(_NEW_POSTS), raw=_BODIES)
def test_any_body_to_the_clerk_endpoints_is_answered_not_crashed(
    page: Page, path: str, raw: bytes
) -> None:
    response = page.post(path, raw=raw)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


def test_the_password_is_never_echoed(page: Page) -> None:
    for body in ({"client_id": page.clerk_id, "password": 98765432109},
                 {"client_id": page.clerk_id, "password": "s3cret-s3cret", "extra": 1},
                 {"client_id": "bad id!", "password": "s3cret-s3cret"}):  # fmt: skip
        response = page.post("/api/clerk/sign-in", body)
        assert response.status_code == 422, response.text
        assert "98765432109" not in response.text and "s3cret-s3cret" not in response.text


def test_every_clerk_problem_has_its_three_texts_in_both_languages() -> None:
    """``clerk_words("KEY", ...)`` builds ``clerk.KEY.title/.detail/.next`` at run time,
    out of sight of the catalogue's key scan."""
    page_dir = Path(reader_agent.page.__file__).parent
    source = "".join(p.read_text(encoding="utf-8") for p in page_dir.glob("*.py"))
    used = set(re.findall(r'clerk_words\(\s*"([a-z.-]+)"', source))
    used |= set(re.findall(r'not_found="([a-z.-]+)"', source))
    assert len(used) > 10
    for key in sorted(used):
        for part in ("title", "detail", "next"):
            for lang in ("zh-CN", "en"):
                assert wording.messages(lang).get(f"clerk.{key}.{part}"), (lang, key, part)
        assert _chinese(wording.text("zh-CN", f"clerk.{key}.title")), key


def test_receipts_from_the_journal_need_a_clerk_and_well_formed_asks(page: Page) -> None:
    _problem(page.http.get("/api/receipts"), 401, "clerk-needed")
    _problem(page.http.get("/api/receipts/1"), 401, "clerk-needed")
    assert page.sign_in().status_code == 200
    assert page.http.get("/api/receipts").json() == {"items": []}
    body = _problem(page.http.get("/api/receipts/7"), 404, "clerk-receipt-not-found")
    assert body["title"] == "没有这张回执"
    for bad in ("/api/receipts?card_number=a%00", "/api/receipts?limit=0",
                "/api/receipts?limit=x", "/api/receipts/0", "/api/receipts/abc",
                "/api/receipts/99999999999999999999"):  # fmt: skip
        response = page.http.get(bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")

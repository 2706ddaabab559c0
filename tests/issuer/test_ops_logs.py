"""Logs: JSON lines with the request id, and no secret in them after a full run."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.core.keys import b64url_encode
from cardsvc.core.transaction import Kind
from cardsvc.ops import logs
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint, verify
from tests.issuer.registry_helpers import bearer, client, services
from tests.issuer.test_token import ask, assertion_for, register
from tests.issuer.test_transaction_batches import offline, upload
from tests.issuer.transaction_helpers import active_card, terminal

__all__ = ["client", "services"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every logger at DEBUG, through the handler `cardsvc serve` installs."""
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logs.handler(stream)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def private_d(signer: Any) -> str:
    value = signer.private_key.private_numbers().private_value
    return b64url_encode(value.to_bytes(32, "big"))


def test_no_secret_reaches_the_logs(
    client: TestClient, services: Services, captured: io.StringIO
) -> None:
    secrets: dict[str, str] = {}
    # Enrolment with an ID number, a card, an e-card activation with a code.
    holder = active_holder(client, services)
    secrets["citizen id"] = holder.person["citizen_id"]
    phone = Phone()
    code_answer = client.post(
        f"/v1/persons/{holder.person_id}/ecard-activation-codes", headers=bearer(services)
    )
    code = code_answer.json()["code"]
    secrets["activation code"] = code
    wrong = client.post(
        "/v1/ecards/activations",
        json={"citizen_id": holder.person["citizen_id"], "code": "AAAA-BBBB-CCCC",
              "device_jwk": phone.jwk},
    )  # fmt: skip
    assert wrong.status_code == 422
    ecard = activate(client, services, holder, phone)
    secrets["e-card credential"] = ecard["credential"]
    secrets["device key d"] = private_d(phone.signer)
    secrets["chip key d"] = private_d(holder.chip)
    # An access token from a client assertion.
    client_id, signer = register(services)
    assertion = assertion_for(services, client_id, signer)
    secrets["client assertion"] = assertion
    granted = ask(client, services, assertion)
    assert granted.status_code == 200  # type: ignore[attr-defined]
    access = granted.json()["access_token"]  # type: ignore[attr-defined]
    secrets["access token"] = access
    secrets["client key d"] = private_d(signer)
    assert client.post(
        "/v1/persons/lookup",
        json={"citizen_id": holder.person["citizen_id"]},
        headers={"Authorization": f"Bearer {access}"},
    ).status_code == 200  # fmt: skip
    # QR tokens minted, verified, replayed, refused for another purpose.
    minted = mint(client, services, ecard["ecard_id"], phone, "transport").json()["tokens"]
    token = minted[0]["token"]
    secrets["QR token"] = token
    assert verify(client, services, token).status_code == 200
    assert verify(client, services, token).status_code == 422
    assert verify(client, services, token, "identity").status_code == 422
    offline_credentials = client.post(
        f"/v1/ecards/{ecard['ecard_id']}/offline-credentials",
        json={},
        headers={"DPoP": phone.proof(services, client, "POST",
                                     f"/v1/ecards/{ecard['ecard_id']}/offline-credentials")},
    )  # fmt: skip
    assert offline_credentials.status_code == 200
    for n, credential in enumerate(offline_credentials.json()["credentials"].values()):
        secrets[f"offline credential {n}"] = credential
    # A counter's offline batch.
    card = active_card(client, services)
    t = terminal(client, services)
    secrets["terminal certificate"] = t.certificate
    upload(client, t, [offline(t, card, kind=Kind.FEE, amount=100, reference="b1")])
    # A line that does carry secrets, as careless code would write it: redacted too.
    logging.getLogger("cardsvc.test").debug(
        "careless %s %s %s Bearer %s {'pin': '123456'} pin=654321",
        holder.person["citizen_id"], code, token, access,
    )  # fmt: skip

    output = captured.getvalue()
    records = lines(captured)
    assert len(records) > 20  # the run was logged (access lines at least)
    assert any(r["logger"] == "cardsvc.access" for r in records)
    assert any(r["message"].startswith("careless [redacted]") for r in records)
    for what, secret in secrets.items():
        assert secret not in output, f"{what} in the logs"
        assert secret[:24] not in output, f"the start of the {what} in the logs"
    assert not re.search(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])", output), "an ID number"
    for needle in ("123456", "654321", "PRIVATE KEY", '"d":', "SSC1:", "eyJ"):
        assert needle not in output, needle


def test_request_ids(client: TestClient, services: Services, captured: io.StringIO) -> None:
    given = client.get("/health/live", headers={"X-Request-ID": "lb-7f3a.0001"})
    assert given.headers["x-request-id"] == "lb-7f3a.0001"
    for bad in ("has space", "x" * 129, "-leading", "semi;colon", ""):
        answer = client.get("/health/live", headers={"X-Request-ID": bad})
        made = answer.headers["x-request-id"]
        assert made != bad and re.fullmatch(r"[0-9a-f]{32}", made), bad
    # Problems carry it too, on the routes and on the verify fast path.
    problem = client.get("/v1/persons", headers={"X-Request-ID": "req-problem-1"})
    assert problem.status_code == 401 and problem.headers["x-request-id"] == "req-problem-1"
    fast = client.post("/v1/verify", json={}, headers={"X-Request-ID": "req-fast-1"})
    assert fast.status_code == 401 and fast.headers["x-request-id"] == "req-fast-1"
    # Each request's access line names its id, route template and status.
    access = {r["request_id"]: r for r in lines(captured) if r["logger"] == "cardsvc.access"}
    assert access["lb-7f3a.0001"]["route"] == "/health/live"
    assert access["req-problem-1"]["status"] == 401
    assert access["req-fast-1"]["route"] == "/v1/verify"
    assert isinstance(access["req-fast-1"]["duration_ms"], float)


def test_tracebacks_are_redacted() -> None:
    """An unexpected error's traceback goes through the filter too."""
    stream = io.StringIO()
    log = logging.getLogger("cardsvc.test.exc")
    log.addHandler(logs.handler(stream))
    try:
        raise ValueError("bad citizen 11010519491231002X code DCKK-GWMP-YNMX")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert "ValueError" in text and "11010519491231002X" not in text and "DCKK" not in text


def test_access_log_off(services: Services, captured: io.StringIO) -> None:
    services.settings = services.settings.model_copy(update={"access_log": False})
    quiet = TestClient(create_app(services.settings, services=services))
    answer = quiet.get("/health/live", headers={"X-Request-ID": "quiet-1"})
    assert answer.headers["x-request-id"] == "quiet-1"  # ids stay
    assert not [r for r in lines(captured) if r["logger"] == "cardsvc.access"]

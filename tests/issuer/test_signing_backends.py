"""Every signing path of the issuer on both key stores, file and PKCS#11 (SoftHSM2):
card document, device-bound e-card credential, QR token, status list, verifier bundle,
audit checkpoint, transaction receipt and access token, each checked by the verifier a
partner or counter would use (``cardsvc.core``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from cardsvc.auth.tokens import verify_access_token
from cardsvc.core.bundle import verify_bundle
from cardsvc.core.carddoc import verify_card_document
from cardsvc.core.checkpoint import verify_checkpoint
from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import verify_qr_token
from cardsvc.core.signing import is_high_s
from cardsvc.core.statuslist import Status, verify_status_list_token
from cardsvc.core.transaction import RECEIPT_TYP
from cardsvc.core.trustlist import TrustList
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.pkcs11 import Pkcs11Backend
from cardsvc.services import Services, utcnow
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import bearer, client, enrol, issue, personalize, services
from tests.issuer.transaction_helpers import active_card, new_entitlement, signed, terminal

__all__ = ["client", "services"]  # fixtures
LEEWAY = timedelta(seconds=5)


@pytest.fixture(params=["file", pytest.param("pkcs11", marks=pytest.mark.softhsm)])
def key_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    # The database is not what varies here (the other modules run both).
    return f"sqlite:///{tmp_path / 'cardsvc.db'}"


def trust_list(services: Services) -> TrustList:
    now = utcnow()
    return TrustList.verify(
        services.trust_list.current(now=now).body,
        root=services.keys.root_key(),
        now=now,
        leeway=LEEWAY,
    )


def test_the_backend_is_the_one_configured(services: Services, key_backend: str) -> None:
    expected = Pkcs11Backend if key_backend == "pkcs11" else FileKeyBackend
    assert isinstance(services.keys.backend, expected)


def test_card_document(client: TestClient, services: Services) -> None:
    card = issue(client, services, enrol(client, services)["id"])
    document = personalize(client, services, card["card_number"])["document"]
    verified = verify_card_document(
        document, trust_list=trust_list(services), now=utcnow(), leeway=LEEWAY
    )
    assert str(verified.card_number) == card["card_number"]


def test_device_bound_credential_and_qr_token(client: TestClient, services: Services) -> None:
    holder = active_holder(client, services)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    key = next(
        k.key for k in services.keys.trusted_keys(now=utcnow()) if k.purpose is KeyPurpose.ECARD
    )
    credential = verify_jws(ecard["credential"], typ="ssc-ecard+jwt", key_for=lambda _h: key)
    assert credential.claims["cnf"]["jwk"]["x"] == phone.jwk["x"]

    minted = mint(client, services, ecard["ecard_id"], phone)
    assert minted.status_code == 200, minted.json()
    text = minted.json()["tokens"][0]["token"]
    token = verify_qr_token(text, trust_list=trust_list(services), now=utcnow(), leeway=LEEWAY)
    assert token.purpose.name == "TRANSPORT"


def test_status_list_and_bundle(client: TestClient, services: Services) -> None:
    card = issue(client, services, enrol(client, services)["id"])
    card = personalize(client, services, card["card_number"])["card"]
    answer = client.get("/v1/status-lists/0")
    assert answer.status_code == 200
    status = verify_status_list_token(
        answer.text,
        trust_list=trust_list(services),
        expected_sub="https://issuer.test/v1/status-lists/0",
        now=utcnow(),
        leeway=LEEWAY,
    )
    assert status.status_list.get(card["status"]["idx"]) == Status.VALID
    bundle = client.get("/v1/bundles/latest")
    assert bundle.status_code == 200
    verified = verify_bundle(
        bundle.text, root=services.keys.root_key(), now=utcnow(), leeway=LEEWAY
    )
    assert verified.status_lists


def test_audit_checkpoint(client: TestClient, services: Services) -> None:
    enrol(client, services)
    stored = services.audit.sign_checkpoint(now=utcnow())
    answer = client.get("/v1/audit/checkpoint", headers=bearer(services))
    assert answer.status_code == 200, answer.text
    checkpoint = verify_checkpoint(
        answer.text, trust_list=trust_list(services), now=utcnow(), leeway=LEEWAY
    )
    assert checkpoint.size == stored.size


def test_transaction_receipt(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    t = terminal(client, services)  # its certificate: the terminal-certificate key
    entitlement = new_entitlement(client, services, card.person_id)
    body = signed(client, t, card, entitlement=entitlement["id"])
    answer = client.post(
        "/v1/transactions", json=body, headers={**t.headers, "Idempotency-Key": "k"}
    )
    assert answer.status_code == 201, answer.json()
    key = next(
        k.key
        for k in services.keys.trusted_keys(now=utcnow())
        if k.purpose is KeyPurpose.TERMINAL_CERTIFICATE
    )
    receipt = verify_jws(answer.json()["receipt"], typ=RECEIPT_TYP, key_for=lambda _h: key)
    assert receipt.claims["sub"] == answer.json()["transaction_id"]


def test_access_token(services: Services) -> None:
    header = bearer(services)["Authorization"].removeprefix("Bearer ")
    principal = verify_access_token(
        header, keys=services.keys, issuer="https://issuer.test", now=utcnow(), leeway=LEEWAY
    )
    assert principal.subject == "clerk-1"


def test_every_signature_is_low_s(services: Services) -> None:
    signer = services.keys.signer(KeyPurpose.STATUS_LIST, now=utcnow())
    for n in range(64):
        assert not is_high_s(signer.sign(n.to_bytes(2, "big")))

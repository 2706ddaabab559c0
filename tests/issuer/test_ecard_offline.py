"""Device-bound offline QR codes end to end: issuer credentials, the phone, the gate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.core.credential import verify_compact_credential
from cardsvc.core.devicebound import present
from cardsvc.core.keys import b64url_decode
from cardsvc.core.qrtoken import Attribute, Purpose
from cardsvc.core.verifier import OfflineVerifier, Outcome
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Holder, Phone, activate, active_holder
from tests.issuer.registry_helpers import assert_problem, registry_services


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings, services=services))


@pytest.fixture
def holder(client: TestClient, services: Services) -> Holder:
    return active_holder(client, services, name="王小明")


def offline_credentials(
    client: TestClient, services: Services, ecard_id: str, phone: Phone | None, **body: Any
) -> Any:
    path = f"/v1/ecards/{ecard_id}/offline-credentials"
    headers = {"DPoP": phone.proof(services, client, "POST", path)} if phone else {}
    return client.post(path, json=body, headers=headers)


def gate(client: TestClient, services: Services) -> OfflineVerifier:
    """A partner's gate with the issuer's current bundle."""
    verifier = OfflineVerifier(services.keys.root_key())
    answer = client.get("/v1/bundles/latest")
    assert answer.status_code == 200, answer.text
    verifier.update(answer.text, now=services.clock())
    return verifier


def test_a_phone_shows_an_offline_code_a_gate_accepts(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    answer = offline_credentials(client, services, ecard["ecard_id"], phone)
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert set(body["credentials"]) == {p.name.lower() for p in Purpose}
    now = services.clock()

    verifier = gate(client, services)
    trust = verifier.bundle.trust_list if verifier.bundle else None
    assert trust is not None
    identity = verify_compact_credential(
        b64url_decode(body["credentials"]["identity"]),
        trust_list=trust,
        now=now,
        leeway=verifier.leeway,
    )
    assert identity.device_key.kid == phone.signer.kid
    assert identity.attributes[Attribute.NAME] == "王小明"
    assert Attribute.PHOTO_REF not in identity.attributes  # no use offline

    transport = b64url_decode(body["credentials"]["transport"])
    text = present(transport, phone.signer, purpose=Purpose.TRANSPORT, now=now, counter=0)
    verdict = verifier.verify(text, purpose=Purpose.TRANSPORT, now=now)
    assert verdict.outcome is Outcome.VALID, verdict
    assert set(verdict.claims) <= {Attribute.CONCESSION, Attribute.CONCESSION_UNTIL}
    assert verifier.verify(text, purpose=Purpose.TRANSPORT, now=now).reason == "replayed"
    wrong_gate = verifier.verify(
        present(transport, phone.signer, purpose=Purpose.TRANSPORT, now=now, counter=1),
        purpose=Purpose.IDENTITY,
        now=now,
    )
    assert wrong_gate.reason == "purpose"


def test_a_suspended_card_or_a_replaced_phone_is_refused_offline(
    client: TestClient, services: Services, holder: Holder
) -> None:
    old_phone, new_phone = Phone(), Phone()
    old = activate(client, services, holder, old_phone)
    kept = offline_credentials(
        client, services, old["ecard_id"], old_phone, purposes=["transport"]
    ).json()
    assert set(kept["credentials"]) == {"transport"}
    transport = b64url_decode(kept["credentials"]["transport"])

    # Binding a new phone revokes the old e-card: its credential still verifies, its
    # status in the next bundle does not.
    activate(client, services, holder, new_phone)
    now = services.clock()
    text = present(transport, old_phone.signer, purpose=Purpose.TRANSPORT, now=now, counter=0)
    verdict = gate(client, services).verify(text, purpose=Purpose.TRANSPORT, now=now)
    assert (verdict.outcome, verdict.reason) == (Outcome.INVALID, "revoked")
    assert not verdict.claims
    assert_problem(offline_credentials(client, services, old["ecard_id"], old_phone), 409)


def test_offline_credentials_need_the_bound_device(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    missing = assert_problem(offline_credentials(client, services, ecard["ecard_id"], None), 401)
    assert missing["reason"] == "proof-missing"
    foreign = assert_problem(offline_credentials(client, services, ecard["ecard_id"], Phone()), 401)
    assert foreign["reason"] in ("proof-key", "proof-signature")

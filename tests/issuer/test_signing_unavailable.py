"""The HSM taken away in the middle of a run: the API answers 503 ``signing-unavailable``
with ``Retry-After`` while it is gone, nothing half-done reaches the database, and
everything works again once it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.api.app import create_app
from cardsvc.audit.events import Actor
from cardsvc.core.carddoc import verify_card_document
from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.transaction import RECEIPT_TYP
from cardsvc.core.trustlist import TrustList
from cardsvc.db.models import Card, ECard, TransactionRow
from cardsvc.errors import SigningUnavailableError
from cardsvc.keystore.pkcs11 import Pkcs11Backend
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from tests.issuer.ecard_helpers import Phone, activation_code, active_holder
from tests.issuer.registry_helpers import (
    assert_problem,
    bearer,
    chip_jwk,
    enrol,
    issue,
    registry_services,
)
from tests.issuer.transaction_helpers import active_card, new_entitlement, signed, terminal
from tests.softhsm import Token

pytestmark = pytest.mark.softhsm


@pytest.fixture
def hsm_services(settings: Settings, hsm_token: Token, tmp_path: Path) -> Iterator[Services]:
    services = registry_services(hsm_token.settings(settings, tmp_path))
    assert isinstance(services.keys.backend, Pkcs11Backend)
    yield services
    services.keys.backend.close()
    services.engine.dispose()


def _key(services: Services, purpose: KeyPurpose):  # type: ignore[no-untyped-def]
    return next(k.key for k in services.keys.trusted_keys(now=utcnow()) if k.purpose is purpose)


def _unavailable(response) -> None:  # type: ignore[no-untyped-def]
    body = assert_problem(response, 503)
    assert body["type"].endswith("/signing-unavailable")
    assert body["title"] == "Signing unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_token_removed_mid_run_gives_503_and_leaves_no_unsigned_record(
    hsm_services: Services, hsm_token: Token
) -> None:
    services = hsm_services
    client = TestClient(create_app(services.settings, services=services))
    headers = bearer(services)  # access tokens are signed too: made while the token is in
    t = terminal(client, services)
    payer = active_card(client, services)
    pension = new_entitlement(client, services, payer.person_id)
    holder = active_holder(client, services)
    code = activation_code(client, services, holder)
    phone = Phone()
    cards = [issue(client, services, enrol(client, services)["id"]) for _ in range(6)]

    def personalize(card: dict[str, object]):  # type: ignore[no-untyped-def]
        return client.post(
            f"/v1/cards/{card['card_number']}/personalization",
            json={"chip_jwk": chip_jwk()},
            headers=headers,
        )

    assert personalize(cards[0]).status_code == 200
    payment = signed(client, t, payer, entitlement=pension["id"])
    activation = {
        "citizen_id": holder.person["citizen_id"],
        "code": code,
        "device_jwk": phone.jwk,
    }

    hsm_token.remove()
    try:
        for card in cards[1:4]:
            _unavailable(personalize(card))
        _unavailable(client.post("/v1/ecards/activations", json=activation))
        _unavailable(
            client.post(
                "/v1/transactions",
                json=payment,
                headers={**t.headers, "Idempotency-Key": "pay-1"},
            )
        )
        # Verifying needs only public keys: it carries on.
        assert client.get("/.well-known/jwks.json").status_code == 200
    finally:
        hsm_token.restore()

    for card in cards[1:]:
        assert personalize(card).status_code == 200
    again = client.post("/v1/ecards/activations", json=activation)
    assert again.status_code == 201, again.json()  # the code was not used up by the failure
    paid = client.post(
        "/v1/transactions", json=payment, headers={**t.headers, "Idempotency-Key": "pay-1"}
    )
    assert paid.status_code == 201, paid.json()

    now = utcnow()
    trust_list = TrustList.verify(
        services.trust_list.current(now=now).body,
        root=services.keys.root_key(),
        now=now,
        leeway=timedelta(seconds=5),
    )
    receipt_key = _key(services, KeyPurpose.TERMINAL_CERTIFICATE)
    with Session(services.engine) as session:
        personalized = session.scalars(select(Card).where(Card.chip_kid.is_not(None))).all()
        # Every card with a chip key bound has its signed document, and it verifies.
        assert len(personalized) == 6 + 2  # ours, the payer's and the e-card holder's
        for card in personalized:
            assert card.document is not None
            verify_card_document(
                card.document, trust_list=trust_list, now=now, leeway=timedelta(seconds=5)
            )
        unbound = session.scalars(select(Card).where(Card.chip_kid.is_(None))).all()
        assert all(c.document is None for c in unbound)
        assert len(session.scalars(select(ECard)).all()) == 1
        rows = session.scalars(select(TransactionRow)).all()
        assert len(rows) == 1
        assert rows[0].receipt is not None
        verify_jws(rows[0].receipt, typ=RECEIPT_TYP, key_for=lambda _h: receipt_key)


def test_threads_personalizing_while_the_token_goes_and_comes_back(
    hsm_services: Services, hsm_token: Token
) -> None:
    """Four threads personalize cards while the token is pulled and put back: each card
    ends either personalized with a document that verifies or untouched (issued, no
    chip key), and every failure was SigningUnavailableError."""
    services = hsm_services
    client = TestClient(create_app(services.settings, services=services))
    cards = [issue(client, services, enrol(client, services)["id"]) for _ in range(80)]
    actor = Actor("clerk-1")
    outcomes: dict[str, str] = {}
    unexpected: list[BaseException] = []
    started = threading.Barrier(5)

    def work(mine: list[dict[str, object]]) -> None:
        started.wait()
        for card in mine:
            number = str(card["card_number"])
            try:
                services.cards.personalize(number, chip_jwk(), actor=actor, now=utcnow())
                outcomes[number] = "signed"
            except SigningUnavailableError:
                outcomes[number] = "unavailable"
            except BaseException as exc:  # reported below
                unexpected.append(exc)
            time.sleep(0.005)

    threads = [threading.Thread(target=work, args=(cards[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.1)
    hsm_token.remove()
    time.sleep(0.3)
    hsm_token.restore()
    for thread in threads:
        thread.join()
    assert unexpected == []
    assert set(outcomes.values()) == {"signed", "unavailable"}, outcomes

    now = utcnow()
    trust_list = TrustList.verify(
        services.trust_list.current(now=now).body,
        root=services.keys.root_key(),
        now=now,
        leeway=timedelta(seconds=5),
    )
    with Session(services.engine) as session:
        rows = {c.card_number: c for c in session.scalars(select(Card)).all()}
    for number, outcome in outcomes.items():
        card = rows[number]
        if outcome == "signed":
            assert card.chip_kid is not None and card.document is not None
            verify_card_document(
                card.document, trust_list=trust_list, now=now, leeway=timedelta(seconds=5)
            )
        else:
            assert card.chip_kid is None and card.document is None
    # After the token came back, every failed card personalizes.
    for number, outcome in outcomes.items():
        if outcome == "unavailable":
            services.cards.personalize(number, chip_jwk(), actor=actor, now=utcnow())

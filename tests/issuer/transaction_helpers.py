"""Helpers of the ledger and transaction tests: a card with a known chip key, a
certified terminal, and records signed as the card and the terminal would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cardsvc.auth.clients import Client, ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.keys import b64url_decode, public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData, card_message
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import bearer, enrol, issue

ADMIN = frozenset({"persons:read", "persons:write", "cards:read", "cards:write",
                   "entitlements:read", "entitlements:write", "transactions:read"})  # fmt: skip


@dataclass
class FakeCard:
    """A card's chip: a key and a counter, signing as SIGN TRANSACTION does."""

    card_number: str
    person_id: str
    chip: LocalSigner = field(
        default_factory=lambda: LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    )
    counter: int = 0

    def sign(self, nonce: bytes, data: bytes) -> tuple[int, bytes]:
        self.counter += 1
        return self.counter, self.chip.sign(card_message(nonce, self.counter, data))


def active_card(client: TestClient, services: Services) -> FakeCard:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    response = client.post(
        f"/v1/cards/{card['card_number']}/personalization",
        json={"chip_jwk": public_jwk(signer.private_key.public_key())},
        headers=bearer(services),
    )
    assert response.status_code == 200, response.json()
    return FakeCard(card_number=card["card_number"], person_id=person["id"], chip=signer)


@dataclass
class Terminal:
    client: Client
    signer: LocalSigner
    headers: dict[str, str]
    certificate: str = ""
    seq: int = 0

    @property
    def id(self) -> str:
        return self.client.client_id


def terminal(client: TestClient, services: Services, name: str = "counter 1") -> Terminal:
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    registered = services.clients.register(
        kind=ClientKind.TERMINAL,
        display_name=name,
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=utcnow(),
    )
    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject=registered.client_id,
        kind="terminal",
        scopes=frozenset({"transactions:write"}),
        now=utcnow(),
    )
    t = Terminal(client=registered, signer=signer, headers={"Authorization": f"Bearer {token}"})
    answer = client.post("/v1/terminal-certificates", headers=t.headers)
    assert answer.status_code == 200, answer.json()
    t.certificate = answer.json()["certificate"]
    return t


def new_entitlement(
    client: TestClient, services: Services, person_id: str, *, period: str = "2025-01",
    amount: int = 350_000, benefit: str = "pension",
) -> dict[str, Any]:  # fmt: skip
    answer = client.post(
        f"/v1/persons/{person_id}/entitlements",
        json={"benefit": benefit, "period": period, "amount_fen": amount},
        headers=bearer(services, ADMIN),
    )
    assert answer.status_code == 201, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def signed(
    client: TestClient,
    t: Terminal,
    card: FakeCard,
    *,
    kind: Kind = Kind.BENEFIT,
    amount: int = 350_000,
    entitlement: str | None = None,
    reference: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Fetch a nonce, let the card and the terminal sign: the request body."""
    nonce = b64url_decode(
        client.post("/v1/transactions/challenges", headers=t.headers).json()["nonce"]
    )
    t.seq += 1
    data = TransactionData(
        kind=kind,
        card=card.card_number,
        terminal=t.id,
        seq=t.seq,
        at=int((at or utcnow()).timestamp()),
        amount_fen=amount,
        entitlement=uuid.UUID(entitlement) if entitlement else None,
        reference=reference,
    ).encode()
    counter, card_signature = card.sign(nonce, data)
    record = SignedRecord.sign(
        nonce=nonce, data=data, counter=counter, card_signature=card_signature, terminal=t.signer
    )
    return {**record.to_json(), "terminal_certificate": t.certificate}

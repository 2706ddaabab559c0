"""The benchmarks' own issuer world, built through the API as clerks and terminals use it:
services on a migrated database, a clerk's bearer token, a personalised card whose chip
key is known, an activated e-card, a certified terminal, and transaction records signed
as the card and the terminal sign them (bench imports nothing of tests)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from fixtures import new_signer

from cardsvc.auth.clients import Client, ClientKind
from cardsvc.auth.scopes import ROLE_SCOPES
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.identity import gb11643_check_character
from cardsvc.core.keys import b64url_decode, public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData, card_message
from cardsvc.db.migrate import upgrade
from cardsvc.db.states import Role
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

CLERK = frozenset(s.value for s in ROLE_SCOPES[Role.CLERK])
_serial = itertools.count(1)


def services_on(settings: Settings) -> Services:
    """Services on a migrated database with keys valid since yesterday."""
    settings = settings.model_copy(
        update={"status_shard_size": 131_072, "status_sync_interval_seconds": 0.0}
    )
    services = Services.from_settings(settings)
    upgrade(services.engine)  # first, so the key events below reach the audit log
    services.keys.init(now=utcnow() - timedelta(days=1))
    return services


def bearer(services: Services, scopes: frozenset[str] = CLERK) -> dict[str, str]:
    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject="bench-clerk",
        kind="operator",
        scopes=scopes,
        now=services.clock(),
    )
    return {"Authorization": f"Bearer {token}"}


def citizen_id() -> str:
    """A valid citizen ID number, another one each call (a bench enrols a few people)."""
    first17 = f"11010519800101{next(_serial):03d}"
    return first17 + gb11643_check_character(first17)


@dataclass
class Card:
    """An enrolled person's personalised card: its chip signs as SIGN TRANSACTION does."""

    person: dict[str, Any]
    card_number: str
    chip: LocalSigner = field(default_factory=new_signer)
    counter: int = 0

    def sign(self, nonce: bytes, data: bytes) -> tuple[int, bytes]:
        self.counter += 1
        return self.counter, self.chip.sign(card_message(nonce, self.counter, data))


def _created(response: Any, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise SystemExit(f"{response.request.url}: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def active_card(client: TestClient, services: Services) -> Card:
    """Enrol a person, issue a card and personalise it with a fresh chip key."""
    headers = bearer(services)
    person = _created(
        client.post("/v1/persons", json={"citizen_id": citizen_id(), "name": "张三"},
                    headers=headers),
        201,
    )  # fmt: skip
    issued = _created(client.post(f"/v1/persons/{person['id']}/cards", headers=headers), 201)
    card = Card(person=person, card_number=issued["card_number"])
    _created(
        client.post(
            f"/v1/cards/{card.card_number}/personalization",
            json={"chip_jwk": public_jwk(card.chip.private_key.public_key())},
            headers=headers,
        ),
        200,
    )
    return card


def activate_ecard(
    client: TestClient, services: Services, card: Card, device: LocalSigner
) -> dict[str, Any]:
    """The holder's e-card, activated with a clerk's code on a phone holding ``device``."""
    code = _created(
        client.post(
            f"/v1/persons/{card.person['id']}/ecard-activation-codes", headers=bearer(services)
        ),
        201,
    )["code"]
    return _created(
        client.post(
            "/v1/ecards/activations",
            json={
                "citizen_id": card.person["citizen_id"],
                "code": code,
                "device_jwk": public_jwk(device.private_key.public_key()),
            },
        ),
        201,
    )


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
    """A registered terminal with a bearer token and its terminal certificate."""
    signer = new_signer()
    registered = services.clients.register(
        kind=ClientKind.TERMINAL,
        display_name=name,
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="bench",
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
    t.certificate = _created(
        client.post("/v1/terminal-certificates", headers=t.headers), 200
    )["certificate"]
    return t


def signed(
    client: TestClient,
    t: Terminal,
    card: Card,
    *,
    kind: Kind = Kind.BENEFIT,
    amount: int = 350_000,
    reference: str | None = None,
) -> dict[str, Any]:
    """Fetch a nonce, let the card and the terminal sign: the POST /v1/transactions body."""
    nonce = b64url_decode(
        client.post("/v1/transactions/challenges", headers=t.headers).json()["nonce"]
    )
    t.seq += 1
    data = TransactionData(
        kind=kind,
        card=card.card_number,
        terminal=t.id,
        seq=t.seq,
        at=int(utcnow().timestamp()),
        amount_fen=amount,
        reference=reference,
    ).encode()
    counter, card_signature = card.sign(nonce, data)
    record = SignedRecord.sign(
        nonce=nonce, data=data, counter=counter, card_signature=card_signature, terminal=t.signer
    )
    return {**record.to_json(), "terminal_certificate": t.certificate}

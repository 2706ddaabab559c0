"""The demo's people and things in the issuer database, found again on every later run.

Everything goes through the issuer's domain services, as the API's handlers do: the
person is enrolled, a card issued (and later personalised on the emulated chip), a counter
terminal registered with its key beside the key store, and a pension entitlement opened for
the current month.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.audit.events import Actor
from cardsvc.auth.clients import ClientKind
from cardsvc.core.identity import CitizenId
from cardsvc.core.keys import public_jwk
from cardsvc.db.models import Card
from cardsvc.db.states import Role
from cardsvc.ledger.errors import DuplicateEntitlementError
from cardsvc.ledger.service import NewEntitlement
from cardsvc.registry.errors import PersonNotFoundError
from cardsvc.registry.lifecycle import LIVE, CardState, OperatorAction
from cardsvc.registry.persons import Enrolment
from cardsvc.services import Services

ACTOR = Actor("demo")
CITIZEN_ID = "11010519491231002X"
NAME = "王芳"
PENSION_FEN = 350_000
#: The demo terminal's registered name (the counter page and its receipts show it).
TERMINAL_NAME = "演示柜台 1号窗口"
#: The demo's clerk (an operator client with role clerk), printed on the receipts.
CLERK_NAME = "李敏"


@dataclass(frozen=True, kw_only=True)
class DemoWorld:
    person_id: uuid.UUID
    citizen_id: str
    name: str
    card: Card
    terminal_id: str
    terminal_key: Path
    entitlement_period: str
    pension_open: bool  # False once collected on an earlier run this month


def ensure_world(
    services: Services, *, key_path: Path, fresh_card: bool, now: datetime
) -> DemoWorld:
    """Find or create the demo person, live card, terminal and this month's pension.

    ``fresh_card``: the emulated chip is gone (its state file missing), so a card that was
    already personalised is reissued and the new one waits for the new chip.
    """
    try:
        person = services.persons.find(CitizenId.parse(CITIZEN_ID))
    except PersonNotFoundError:
        person = services.persons.enrol(
            Enrolment(citizen_id=CitizenId.parse(CITIZEN_ID), name=NAME), actor=ACTOR, now=now
        )
    card = _live_card(services, person.id, now=now)
    if card is None:
        card = services.cards.issue(person.id, actor=ACTOR, now=now, reason="new card")
    elif fresh_card and card.state != CardState.PENDING_PERSONALIZATION:
        card = services.cards.reissue(
            card.card_number, reason="demo chip replaced", actor=ACTOR, now=now
        )
    elif card.state == CardState.SUSPENDED:
        # Reported lost from the wallet on an earlier run (thing 3 to try): the demo
        # starts with the card back in good standing, as a counter would resume it.
        card = services.cards.change(
            card.card_number,
            OperatorAction.RESUME,
            reason="demo restarted",
            actor=ACTOR,
            now=now,
        )
    period = f"{now:%Y-%m}"
    # Opened on an earlier run (and perhaps collected since) is as good.
    with contextlib.suppress(DuplicateEntitlementError):
        services.ledger.create(
            person.id,
            NewEntitlement(benefit="pension", period=period, amount_fen=PENSION_FEN),
            actor=ACTOR,
            now=now,
        )
    rows = services.ledger.list(person.id, after=None, limit=100)
    pension_open = any(
        r.benefit == "pension" and r.period == period and r.state == "open" for r in rows
    )
    return DemoWorld(
        person_id=person.id,
        citizen_id=person.citizen_id,
        name=person.name,
        card=card,
        terminal_id=_terminal(services, key_path, now=now),
        terminal_key=key_path,
        entitlement_period=period,
        pension_open=pension_open,
    )


def _live_card(services: Services, person_id: uuid.UUID, *, now: datetime) -> Card | None:
    cards = services.cards.list(person_id=person_id, after=None, limit=50)
    for card in cards:
        current = services.cards.get(card.card_number, now=now)  # applies a due lapse
        if CardState(current.state) in LIVE:
            return current
    return None


def _terminal(services: Services, key_path: Path, *, now: datetime) -> str:
    """The demo counter's client id; its private key sits in ``key_path``."""
    for client in services.clients.list():
        if client.display_name == TERMINAL_NAME and client.active and key_path.exists():
            return client.client_id
    private = ec.generate_private_key(ec.SECP256R1())
    key_path.unlink(missing_ok=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the terminal's only
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    client = services.clients.register(
        kind=ClientKind.TERMINAL,
        display_name=TERMINAL_NAME,
        jwk=public_jwk(private.public_key()),
        created_by=ACTOR,
        now=now,
    )
    return client.client_id


def ensure_clerk(services: Services, key_path: Path, *, now: datetime) -> str:
    """The demo clerk's operator client id (role clerk); its private key sits in
    ``key_path`` (the demo enrols it at the counter under the printed password)."""
    for client in services.clients.list():
        if client.display_name == CLERK_NAME and client.active and key_path.exists():
            return client.client_id
    private = ec.generate_private_key(ec.SECP256R1())
    key_path.unlink(missing_ok=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    client = services.clients.register(
        kind=ClientKind.OPERATOR,
        display_name=CLERK_NAME,
        role=Role.CLERK,
        jwk=public_jwk(private.public_key()),
        created_by=ACTOR,
        now=now,
    )
    return client.client_id

"""E-card activation: one-time codes, counter challenges and binding a device key.

A phone's device key is bound to a person with an active card, either with a one-time
code a clerk issued or at a counter, where the card's chip answers a challenge and the
terminal attests the PIN. Binding replaces the person's older e-cards, takes a status
index in the shards cards use, and returns the signed e-card credential.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.audit import hooks as audit_hooks
from cardsvc.audit import log as audit
from cardsvc.audit.events import WALLET, Actor, AuditEvent, AuditKind
from cardsvc.core.carddoc import CHINA_TZ
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.keys import ES256, KeyPurpose, VerifyingKey, b64url_encode
from cardsvc.core.signing import sign_jws
from cardsvc.db.models import ActivationCode, Card, CardEvent, ECard, Person
from cardsvc.db.states import ActivationChannel, ActivationCodeState
from cardsvc.ecards.errors import (
    ActivationError,
    ActivationLockedError,
    DeviceAlreadyBoundError,
    DeviceKeyError,
    NoActiveCardError,
)
from cardsvc.ecards.policy import ECardPolicy
from cardsvc.ecards.proofs import Sealer
from cardsvc.ecards.views import ECardDirectory, ECardView, view_of
from cardsvc.keystore.service import KeyService
from cardsvc.registry.cards import parse_card_number
from cardsvc.registry.db import read_session, write_session
from cardsvc.registry.ecard_states import ECardState
from cardsvc.registry.errors import CardNotFoundError, PersonNotFoundError
from cardsvc.registry.lifecycle import CardState
from cardsvc.registry.status import StatusLists
from cardsvc.replay import ReplayCache

#: What the chip signs for INTERNAL AUTHENTICATE (docs/card-protocol.md).
CHIP_AUTH_CONTEXT = b"cardsvc-chip-auth-v1\x00"
CHIP_NONCE_BYTES = 16
CREDENTIAL_TYP = "ssc-ecard+jwt"
#: Activation code alphabet: no 0/O, 1/I/L; 12 characters carry about 59 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12
_SCRYPT = {"n": 2**12, "r": 8, "p": 1, "dklen": 32}
_RETRIES = 8


@dataclass(frozen=True, kw_only=True)
class Activation:
    ecard: ECardView
    credential: str


@dataclass(frozen=True, kw_only=True)
class IssuedCode:
    code: str
    expires_at: datetime
    attempts: int


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch not in "- ")


def _hash_code(code: str, salt: bytes) -> str:
    return hashlib.scrypt(code.encode(), salt=salt, **_SCRYPT).hex()


class ActivationService:
    """Activation codes, counter activation and device binding of this issuer's e-cards.

    Status entries share the registry's shards and allocator.
    """

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        status: StatusLists,
        directory: ECardDirectory,
        replay: ReplayCache,
        policy: ECardPolicy,
        *,
        sealer: Sealer,
        issuer: str,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._status = status
        self._directory = directory
        self.replay = replay
        self.policy = policy
        self.sealer = sealer
        self._issuer = issuer

    # -- activation codes -------------------------------------------------------------

    def issue_code(self, person_id: uuid.UUID, *, actor: Actor, now: datetime) -> IssuedCode:
        """A new one-time code for a person with an active card; older open codes end."""
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        salt = secrets.token_bytes(16)
        expires = now + self.policy.code_lifetime
        with write_session(self._engine) as session:
            person = session.get(Person, person_id)
            if person is None:
                raise PersonNotFoundError("no such person", person_id=str(person_id))
            self._active_card(session, person)
            session.execute(
                update(ActivationCode)
                .where(
                    ActivationCode.person_id == person_id,
                    ActivationCode.state == ActivationCodeState.OPEN,
                )
                .values(state=ActivationCodeState.SUPERSEDED, updated_at=now)
            )
            session.add(
                ActivationCode(
                    id=uuid.uuid4(),
                    person_id=person_id,
                    salt=salt.hex(),
                    code_hash=_hash_code(code, salt),
                    state=ActivationCodeState.OPEN,
                    attempts=0,
                    max_attempts=self.policy.code_attempts,
                    expires_at=expires,
                    created_at=now,
                    created_by=actor,
                    updated_at=now,
                )
            )
            audit.append(
                session,
                AuditEvent(kind=AuditKind.ECARD_CODE_ISSUED, subject=f"person:{person_id}",
                           data={"expires_at": expires.isoformat(),
                                 "attempts": self.policy.code_attempts}),
                actor=actor,
                now=now,
            )  # fmt: skip
        shown = "-".join(code[i : i + 4] for i in range(0, CODE_LENGTH, 4))
        return IssuedCode(code=shown, expires_at=expires, attempts=self.policy.code_attempts)

    def activate_with_code(
        self, citizen_id: str, code: str, device_jwk: Mapping[str, object], *, now: datetime
    ) -> Activation:
        """Bind ``device_jwk`` with a one-time code; wrong codes count towards a lock."""
        device_key = _device_key(device_jwk)
        failure: ActivationError | None = None
        code_row: ActivationCode | None = None
        with write_session(self._engine) as session:
            person = session.scalar(select(Person).where(Person.citizen_id == citizen_id.upper()))
            latest = (
                session.scalars(
                    select(ActivationCode)
                    .where(ActivationCode.person_id == person.id)
                    .order_by(ActivationCode.created_at.desc())
                    .limit(1)
                    .with_for_update()
                ).first()
                if person is not None
                else None
            )
            if latest is None or latest.state is ActivationCodeState.SUPERSEDED:
                failure = ActivationError("no-code", "no activation code was issued for this ID")
            elif latest.state is ActivationCodeState.LOCKED:
                failure = ActivationLockedError(
                    "locked", "too many wrong codes: ask a counter for a new one"
                )
            elif latest.state is ActivationCodeState.USED:
                failure = ActivationError("used", "this activation code was already used")
            elif _aware(latest.expires_at) <= now:
                failure = ActivationError("expired", "this activation code has expired")
            elif not hmac.compare_digest(
                _hash_code(normalize_code(code), bytes.fromhex(latest.salt)), latest.code_hash
            ):
                latest.attempts += 1
                latest.updated_at = now
                left = latest.max_attempts - latest.attempts
                if left <= 0:
                    latest.state = ActivationCodeState.LOCKED
                    audit.append(
                        session,
                        AuditEvent(kind=AuditKind.ECARD_CODE_LOCKED,
                                   subject=f"person:{latest.person_id}",
                                   data={"attempts": latest.attempts}),
                        actor=WALLET,
                        now=now,
                    )  # fmt: skip
                    failure = ActivationLockedError(
                        "locked", "wrong code; too many attempts, the code is now locked"
                    )
                else:
                    failure = ActivationError(
                        "wrong-code", "wrong activation code", attempts_left=left
                    )
            else:
                code_row = latest
        if failure is not None:  # raised after the attempt count committed
            raise failure
        assert code_row is not None  # noqa: S101 - set above
        return self._bind(
            code_row.person_id,
            device_key,
            via=ActivationChannel.CODE,
            actor=Actor(f"activation-code:{code_row.id}"),
            now=now,
            code_id=code_row.id,
        )

    # -- activation at a counter --------------------------------------------------------

    def counter_challenge(self, card_number: str, *, now: datetime) -> tuple[str, bytes]:
        """A sealed challenge and the 16-byte nonce the terminal relays to the chip."""
        number = str(parse_card_number(card_number))
        with read_session(self._engine) as session:
            card = session.scalar(select(Card).where(Card.card_number == number))
        if card is None:
            raise CardNotFoundError("no such card", card_number=number)
        if card.state is not CardState.ACTIVE or card.chip_jwk is None:
            raise NoActiveCardError("the card is not active", state=card.state)
        nonce = secrets.token_bytes(CHIP_NONCE_BYTES)
        return self.sealer.seal(b"chip", nonce + number.encode(), now=now), nonce

    def activate_at_counter(
        self,
        challenge: str,
        chip_signature: bytes,
        device_jwk: Mapping[str, object],
        *,
        pin_verified: bool,
        actor: Actor,
        now: datetime,
    ) -> Activation:
        """Bind ``device_jwk`` for the holder of the card that answered ``challenge``.

        The chip's INTERNAL AUTHENTICATE answer is checked with the chip key this issuer
        certified for that card; the terminal attests that the PIN was verified.
        """
        device_key = _device_key(device_jwk)
        try:
            body = self.sealer.open(
                b"chip", challenge, now=now, max_age=self.policy.challenge_max_age
            )
        except ValueError as exc:
            raise ActivationError("challenge", f"challenge: {exc}") from None
        nonce, number = body[:CHIP_NONCE_BYTES], body[CHIP_NONCE_BYTES:].decode()
        if not pin_verified:
            raise ActivationError("pin", "the holder's PIN must be verified at the counter")
        with read_session(self._engine) as session:
            card = session.scalar(select(Card).where(Card.card_number == number))
        if card is None or card.state is not CardState.ACTIVE or card.chip_jwk is None:
            raise NoActiveCardError("the card is not active")
        chip_key = VerifyingKey.from_jwk(json.loads(card.chip_jwk))
        try:
            chip_key.verify_raw(chip_signature, CHIP_AUTH_CONTEXT + nonce)
        except VerificationError:
            raise ActivationError(
                "chip-signature", "the chip's answer does not verify with its certified key"
            ) from None
        ttl = int(self.policy.challenge_max_age.total_seconds()) + 10
        if not self.replay.first_use(f"chip:{nonce.hex()}", ttl_seconds=ttl):
            raise ActivationError("challenge-replayed", "this challenge was already used")
        return self._bind(
            card.person_id, device_key, via=ActivationChannel.COUNTER, actor=actor, now=now
        )

    # -- binding --------------------------------------------------------------------

    def _bind(
        self,
        person_id: uuid.UUID,
        device_key: VerifyingKey,
        *,
        via: ActivationChannel,
        actor: Actor,
        now: datetime,
        code_id: uuid.UUID | None = None,
    ) -> Activation:
        for _ in range(_RETRIES):
            shard, idx = self._status.allocate(now=now)
            try:
                return self._bind_once(
                    person_id,
                    device_key,
                    shard,
                    idx,
                    via=via,
                    actor=actor,
                    now=now,
                    code_id=code_id,
                )
            except _IndexTakenError:
                continue
            except IntegrityError as exc:
                if "status" not in str(exc.orig) and "ref" not in str(exc.orig):
                    raise
        raise RuntimeError("could not allocate a unique e-card status index")

    def _bind_once(
        self,
        person_id: uuid.UUID,
        device_key: VerifyingKey,
        shard: int,
        idx: int,
        *,
        via: ActivationChannel,
        actor: Actor,
        now: datetime,
        code_id: uuid.UUID | None,
    ) -> Activation:
        with write_session(self._engine) as session:
            person = session.get(Person, person_id)
            if person is None:
                raise PersonNotFoundError("no such person", person_id=str(person_id))
            card = self._active_card(session, person)
            # The holder's e-card is already active on this very phone (its QR code
            # scanned twice): said, rather than replaced by an identical one.
            if session.scalar(
                select(ECard.id).where(
                    ECard.person_id == person_id,
                    ECard.device_kid == device_key.kid,
                    ECard.state == ECardState.ACTIVE,
                )
            ):
                raise DeviceAlreadyBoundError(
                    "the holder's e-card is already active with this device key"
                )
            # Cards and e-cards share shards: the index must be free in both tables.
            if session.scalar(
                select(Card.id).where(Card.status_shard == shard, Card.status_idx == idx)
            ):
                raise _IndexTakenError
            replaced = session.scalars(
                select(ECard)
                .where(ECard.person_id == person_id, ECard.state == ECardState.ACTIVE)
                .with_for_update()
            ).all()
            for old in replaced:
                old.state = ECardState.REPLACED
                old.updated_at = now
            session.flush()
            if code_id is not None:
                used = session.execute(
                    update(ActivationCode)
                    .where(
                        ActivationCode.id == code_id,
                        ActivationCode.state == ActivationCodeState.OPEN,
                    )
                    .values(state=ActivationCodeState.USED, updated_at=now)
                )
                if used.rowcount != 1:  # type: ignore[attr-defined]
                    raise ActivationError("used", "this activation code was already used")
            ecard = ECard(
                id=uuid.uuid4(),
                ref=secrets.token_bytes(8).hex(),
                person_id=person_id,
                card_id=card.id,
                state=ECardState.ACTIVE,
                status_shard=shard,
                status_idx=idx,
                device_kid=device_key.kid,
                device_jwk=json.dumps(device_key.jwk(), sort_keys=True),
                activated_via=via,
                created_at=now,
                created_by=actor,
                updated_at=now,
            )
            session.add(ecard)
            # A card event, so other processes' status sync picks the e-card up too.
            bound = CardEvent(
                card_id=card.id,
                person_id=card.person_id,
                action="ecard_bound",
                from_state=card.state,
                to_state=card.state,
                reason=f"e-card bound to device {device_key.kid[:12]} ({via})"
                + (f", {len(replaced)} older device(s) deactivated" if replaced else ""),
                actor=actor,
                at=now,
            )
            session.add(bound)
            audit_hooks.card_event(session, bound, card, actor=actor, now=now)  # the card's leaf
            audit.append(
                session,
                AuditEvent(
                    kind=AuditKind.ECARD_BOUND,
                    subject=f"ecard:{ecard.id}",
                    data={
                        "via": via,
                        "card": f"card:{card.id}",
                        "device_kid": device_key.kid,
                        "replaced": [f"ecard:{old.id}" for old in replaced],
                    },
                    row=ecard,
                ),
                actor=actor,
                now=now,
            )
            view = view_of(ecard, person, card, now=now)
            # Signed before the commit: a signing device that fails rolls the activation
            # back (the code stays usable), never leaving an e-card without a credential.
            credential = self.credential(view, now=now)
            changes = [(shard, idx, CardState.ACTIVE)] + [
                (o.status_shard, o.status_idx, CardState.REVOKED) for o in replaced
            ]
        self._status.apply(changes)
        self._directory.forget([bytes.fromhex(old.ref) for old in replaced])
        return Activation(ecard=view, credential=credential)

    def credential(self, view: ECardView, *, now: datetime) -> str:
        """The signed e-card credential: the device key (``cnf``) and the status entry,
        valid until the end of the card's last day (Beijing time)."""
        if view.card_expiry is None:
            raise NoActiveCardError("the card has no expiry date")
        until = datetime.combine(view.card_expiry + timedelta(days=1), dtime(0), CHINA_TZ)
        shard, idx = view.status
        return sign_jws(
            {"typ": CREDENTIAL_TYP},
            {
                "iss": self._issuer,
                "sub": b64url_encode(view.ref),
                "iat": int(now.timestamp()),
                "exp": int(until.timestamp()),
                "cnf": {"jwk": view.device_key.jwk()},
                "status": {"status_list": {"idx": idx, "uri": self._status.uri(shard)}},
            },
            self._keys.signer(KeyPurpose.ECARD, now=now),
        )

    @staticmethod
    def _active_card(session: Session, person: Person) -> Card:
        if person.deceased_on is not None:
            raise NoActiveCardError("the holder's death was recorded")
        card = session.scalar(
            select(Card).where(Card.person_id == person.id, Card.state == CardState.ACTIVE)
        )
        if card is None:
            raise NoActiveCardError("an e-card needs an active, personalized card")
        return card


class _IndexTakenError(Exception):
    pass


def _device_key(jwk: Mapping[str, object]) -> VerifyingKey:
    if not isinstance(jwk, Mapping) or "d" in jwk:
        raise DeviceKeyError("the device key must be a public P-256 JWK")
    try:
        key = VerifyingKey.from_jwk(jwk)
    except CoreError as exc:
        raise DeviceKeyError(f"invalid device key: {exc.detail}") from None
    if key.alg != ES256:  # a phone's key signs device proofs and SSC2 codes with ES256
        raise DeviceKeyError("the device key must be a public P-256 JWK")
    return key


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

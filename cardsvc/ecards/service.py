"""E-card domain service: activation, device binding, token minting, online verification."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.audit import hooks as audit_hooks
from cardsvc.audit import log as audit
from cardsvc.audit.events import WALLET, Actor, AuditEvent, AuditKind
from cardsvc.core.carddoc import CHINA_TZ
from cardsvc.core.credential import (
    CompactCredential,
    compressed_point,
    encode_compact_credential,
)
from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_encode
from cardsvc.core.qrtoken import (
    MAX_QR_TEXT,
    PURPOSE_ATTRIBUTES,
    SCHEME_PREFIX,
    Attribute,
    Purpose,
    QrToken,
    encode_qr_token,
    verify_qr_token,
)
from cardsvc.core.signing import sign_jws
from cardsvc.core.statuslist import Status
from cardsvc.core.trustlist import TrustAnchor, TrustList
from cardsvc.db.models import ActivationCode, Card, CardEvent, ECard, Person
from cardsvc.ecards.errors import (
    ActivationError,
    ActivationLockedError,
    DeviceKeyError,
    ECardInactiveError,
    ECardNotFoundError,
    NoActiveCardError,
    TokenRejectedError,
)
from cardsvc.ecards.proofs import Sealer, new_nonce, verify_device_proof
from cardsvc.ecards.states import ECardState
from cardsvc.keystore.service import KeyService
from cardsvc.registry.cards import parse_card_number
from cardsvc.registry.db import read_session, write_session
from cardsvc.registry.errors import CardNotFoundError, PersonNotFoundError
from cardsvc.registry.lifecycle import CardState
from cardsvc.registry.status import StatusLists
from cardsvc.replay import OneTimeUse, ReplayCache

#: What the chip signs for INTERNAL AUTHENTICATE (docs/card-protocol.md).
CHIP_AUTH_CONTEXT = b"cardsvc-chip-auth-v1\x00"
CHIP_NONCE_BYTES = 16
CREDENTIAL_TYP = "ssc-ecard+jwt"
#: Activation code alphabet: no 0/O, 1/I/L; 12 characters carry about 59 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12
#: Bounded leeway of online QR verification (tokens live about a minute).
QR_LEEWAY = timedelta(seconds=5)
_SCRYPT = {"n": 2**12, "r": 8, "p": 1, "dklen": 32}
_VIEW_CACHE = 100_000
_RETRIES = 8


@dataclass(frozen=True, kw_only=True)
class ECardPolicy:
    token_lifetime: timedelta
    offline_period: timedelta
    code_lifetime: timedelta
    code_attempts: int
    proof_max_age: timedelta
    challenge_max_age: timedelta = timedelta(minutes=2)
    #: Life of a compact credential for device-bound offline QR codes; the wallet renews
    #: it when online. Bounds how long an ``ecard`` key stays listed after its last use.
    offline_credential_lifetime: timedelta = timedelta(days=7)


@dataclass(frozen=True, kw_only=True)
class ECardView:
    """What minting and verifying need about one e-card (immutable once bound)."""

    id: uuid.UUID
    ref: bytes
    state: str
    person_id: uuid.UUID
    card_number: str
    status: tuple[int, int]
    card_status: tuple[int, int]
    device_key: VerifyingKey
    attributes: Mapping[Attribute, object]
    card_expiry: date | None = None


@dataclass(frozen=True, kw_only=True)
class OfflineCredentials:
    """Compact credentials, one per purpose, for device-bound offline QR codes."""

    credentials: Mapping[Purpose, bytes]
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class Activation:
    ecard: ECardView
    credential: str


@dataclass(frozen=True, kw_only=True)
class IssuedCode:
    code: str
    expires_at: datetime
    attempts: int


@dataclass(frozen=True, kw_only=True)
class Minted:
    token: str
    valid_from: datetime
    valid_until: datetime


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch not in "- ")


def _hash_code(code: str, salt: bytes) -> str:
    return hashlib.scrypt(code.encode(), salt=salt, **_SCRYPT).hex()


def china_date(now: datetime) -> date:
    return now.astimezone(CHINA_TZ).date()


def _age(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def holder_attributes(person: Person, card: Card, *, now: datetime) -> dict[Attribute, object]:
    """Every attribute a token may disclose; each purpose takes only its own subset."""
    age = _age(person.birth_date, china_date(now))
    attrs: dict[Attribute, object] = {
        Attribute.NAME: person.name,
        Attribute.ID_NO: person.citizen_id,
        Attribute.PHOTO_REF: hashlib.sha256(b"photo:" + person.id.bytes).digest()[:16],
        Attribute.INSURED_REGION: person.region_code,
        # Senior concession (1) from 60; 0: none. Valid as long as the card.
        Attribute.CONCESSION: 1 if age >= 60 else 0,
        Attribute.CONCESSION_UNTIL: card.expiry_date,
    }
    over = [threshold for threshold in (70, 65, 60) if age >= threshold]
    if over:
        attrs[Attribute.AGE_OVER] = over[0]
    return attrs


class ECardService:
    """E-cards of this issuer. Status entries share the registry's shards and allocator."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        status: StatusLists,
        replay: ReplayCache,
        policy: ECardPolicy,
        *,
        issuer: str,
        secret: bytes,
    ) -> None:
        #: monotonic time of the last status sync run by online verify (throttle).
        self.last_status_sync = -1e9
        self._engine = engine
        self._keys = keys
        self._status = status
        self._replay = replay
        self.policy = policy
        self._issuer = issuer
        self.sealer = Sealer(secret)
        self._lock = threading.Lock()
        self._views: OrderedDict[bytes, ECardView] = OrderedDict()
        self._trust: tuple[str, TrustList] | None = None
        self._trust_checked = -float("inf")

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
                .where(ActivationCode.person_id == person_id, ActivationCode.state == "open")
                .values(state="superseded", updated_at=now)
            )
            session.add(
                ActivationCode(
                    id=uuid.uuid4(),
                    person_id=person_id,
                    salt=salt.hex(),
                    code_hash=_hash_code(code, salt),
                    state="open",
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
            if latest is None or latest.state in ("superseded",):
                failure = ActivationError("no-code", "no activation code was issued for this ID")
            elif latest.state == "locked":
                failure = ActivationLockedError(
                    "locked", "too many wrong codes: ask a counter for a new one"
                )
            elif latest.state == "used":
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
                    latest.state = "locked"
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
            via="code",
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
        if card.state != CardState.ACTIVE or card.chip_jwk is None:
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
        if card is None or card.state != CardState.ACTIVE or card.chip_jwk is None:
            raise NoActiveCardError("the card is not active")
        chip_key = VerifyingKey.from_jwk(json.loads(card.chip_jwk))
        try:
            chip_key.verify_raw(chip_signature, CHIP_AUTH_CONTEXT + nonce)
        except VerificationError:
            raise ActivationError(
                "chip-signature", "the chip's answer does not verify with its certified key"
            ) from None
        ttl = int(self.policy.challenge_max_age.total_seconds()) + 10
        if not self._replay.first_use(f"chip:{nonce.hex()}", ttl_seconds=ttl):
            raise ActivationError("challenge-replayed", "this challenge was already used")
        return self._bind(card.person_id, device_key, via="counter", actor=actor, now=now)

    # -- binding --------------------------------------------------------------------

    def _bind(
        self,
        person_id: uuid.UUID,
        device_key: VerifyingKey,
        *,
        via: str,
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
        via: str,
        actor: Actor,
        now: datetime,
        code_id: uuid.UUID | None,
    ) -> Activation:
        with write_session(self._engine) as session:
            person = session.get(Person, person_id)
            if person is None:
                raise PersonNotFoundError("no such person", person_id=str(person_id))
            card = self._active_card(session, person)
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
                    .where(ActivationCode.id == code_id, ActivationCode.state == "open")
                    .values(state="used", updated_at=now)
                )
                if used.rowcount != 1:  # type: ignore[attr-defined]
                    raise ActivationError("used", "this activation code was already used")
            ecard = ECard(
                id=uuid.uuid4(),
                ref=secrets.token_bytes(8).hex(),
                person_id=person_id,
                card_id=card.id,
                state=ECardState.ACTIVE.value,
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
            view = _view(ecard, person, card, now=now)
            changes = [(shard, idx, CardState.ACTIVE)] + [
                (o.status_shard, o.status_idx, CardState.REVOKED) for o in replaced
            ]
        self._status.apply(changes)
        with self._lock:
            for old in replaced:
                self._views.pop(bytes.fromhex(old.ref), None)
        return Activation(ecard=view, credential=self.credential(view, card, now=now))

    def credential(self, view: ECardView, card: Card, *, now: datetime) -> str:
        """The signed e-card credential: the device key (``cnf``) and the status entry."""
        until = datetime.combine(card.expiry_date + timedelta(days=1), dtime(0), CHINA_TZ)
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

    # -- reads ----------------------------------------------------------------------

    def get(self, ecard_id: uuid.UUID, *, now: datetime) -> ECardView:
        with read_session(self._engine) as session:
            row = session.execute(
                select(ECard, Person, Card)
                .join(Person, Person.id == ECard.person_id)
                .join(Card, Card.id == ECard.card_id)
                .where(ECard.id == ecard_id)
            ).first()
        if row is None:
            raise ECardNotFoundError("no such e-card", ecard_id=str(ecard_id))
        return _view(row[0], row[1], row[2], now=now)

    def by_ref(self, ref: bytes, *, now: datetime) -> ECardView | None:
        """An e-card by its token reference, cached (what it maps to never changes)."""
        with self._lock:
            view = self._views.get(ref)
            if view is not None:
                self._views.move_to_end(ref)
                return view
        with read_session(self._engine) as session:
            row = session.execute(
                select(ECard, Person, Card)
                .join(Person, Person.id == ECard.person_id)
                .join(Card, Card.id == ECard.card_id)
                .where(ECard.ref == ref.hex())
            ).first()
        if row is None:
            return None
        view = _view(row[0], row[1], row[2], now=now)
        with self._lock:
            self._views[ref] = view
            if len(self._views) > _VIEW_CACHE:
                self._views.popitem(last=False)
        return view

    def live_status(self, view: ECardView) -> tuple[Status, Status]:
        """(card status, e-card status) from the in-memory status lists."""
        return self._status.status_of(*view.card_status), self._status.status_of(*view.status)

    # -- device proofs and tokens ---------------------------------------------------------

    def nonce(self, *, now: datetime) -> str:
        return new_nonce(self.sealer, now=now)

    def check_proof(
        self, view: ECardView, proof: str | None, *, htm: str, htu: str, now: datetime
    ) -> None:
        verify_device_proof(
            proof,
            key=view.device_key,
            htm=htm,
            htu=htu,
            now=now,
            max_age=self.policy.proof_max_age,
            sealer=self.sealer,
            replay=self._replay,
        )

    def mint(
        self,
        view: ECardView,
        purpose: Purpose,
        *,
        now: datetime,
        lifetime: timedelta | None = None,
        period: timedelta | None = None,
    ) -> list[Minted]:
        """QR tokens for ``purpose``: one, or consecutive windows covering ``period``.

        Refused unless both the card and the e-card are valid right now.
        """
        card_status, ecard_status = self.live_status(view)
        if card_status is not Status.VALID or ecard_status is not Status.VALID:
            raise ECardInactiveError(
                "the e-card or its card is not valid",
                card_status=card_status.name.lower(),
                ecard_status=ecard_status.name.lower(),
            )
        window = int((lifetime or self.policy.token_lifetime).total_seconds())
        count = 1 if period is None else max(1, -(-int(period.total_seconds()) // window))
        allowed = PURPOSE_ATTRIBUTES[purpose]
        attrs = {a: v for a, v in view.attributes.items() if a in allowed}
        signer = self._keys.signer(KeyPurpose.ECARD, now=now)
        start = int(now.timestamp())
        shard, idx = view.status
        out = []
        for i in range(count):
            begins = datetime.fromtimestamp(start + i * window, UTC)
            ends = begins + timedelta(seconds=window)
            token = QrToken(
                issuer=self._issuer,
                purpose=purpose,
                ecard_ref=view.ref,
                jti=secrets.token_bytes(8),
                issued_at=begins,
                expires_at=ends,
                status_shard=shard,
                status_idx=idx,
                attributes=attrs,
            )
            out.append(
                Minted(token=encode_qr_token(token, signer), valid_from=begins, valid_until=ends)
            )
        return out

    def offline_credentials(
        self, view: ECardView, *, now: datetime, purposes: Iterable[Purpose] | None = None
    ) -> OfflineCredentials:
        """Compact credentials for ``purposes`` (default all), bound to the device key.

        The phone wraps one with its device key into an ``SSC2:`` QR code when neither it
        nor the verifier is online (:mod:`cardsvc.core.devicebound`). Each credential
        carries only its purpose's attributes, without the photo reference (no use to a
        verifier without a network), and lives ``offline_credential_lifetime``, at most
        until the card's expiry. Refused unless the card and the e-card are valid.
        """
        card_status, ecard_status = self.live_status(view)
        if card_status is not Status.VALID or ecard_status is not Status.VALID:
            raise ECardInactiveError(
                "the e-card or its card is not valid",
                card_status=card_status.name.lower(),
                ecard_status=ecard_status.name.lower(),
            )
        until = datetime.fromtimestamp(
            int((now + self.policy.offline_credential_lifetime).timestamp()), UTC
        )
        if view.card_expiry is not None:
            card_end = datetime.combine(view.card_expiry + timedelta(days=1), dtime(0), CHINA_TZ)
            until = min(until, card_end.astimezone(UTC))
        signer = self._keys.signer(KeyPurpose.ECARD, now=now)
        shard, idx = view.status
        credentials = {}
        for purpose in Purpose if purposes is None else dict.fromkeys(purposes):
            allowed = PURPOSE_ATTRIBUTES[purpose] - {Attribute.PHOTO_REF}
            credential = CompactCredential(
                issuer=self._issuer,
                purpose=purpose,
                ecard_ref=view.ref,
                status_shard=shard,
                status_idx=idx,
                device_point=compressed_point(view.device_key),
                expires_at=until,
                attributes={a: v for a, v in view.attributes.items() if a in allowed},
            )
            credentials[purpose] = encode_compact_credential(credential, signer)
        return OfflineCredentials(credentials=credentials, expires_at=until)

    # -- online verification ------------------------------------------------------------

    def trust_list(self, *, now: datetime, published: tuple[str, str]) -> TrustList:
        """The issuer's own published trust list, verified against the root (cached)."""
        etag, body = published
        current = self._trust
        if current is not None and current[0] == etag:
            return current[1]
        anchor = TrustAnchor(self._keys.root_key())
        accepted = anchor.accept(body, now=now, leeway=QR_LEEWAY)
        self._trust = (etag, accepted)
        return accepted

    def verify(
        self, text: object, *, purpose: Purpose, trust_list: TrustList, now: datetime
    ) -> QrToken:
        """Verify a QR token online; :class:`TokenRejectedError` names the failed check.

        Checks: size, prefix, format, trust-list key and purpose, signature, claims,
        validity window (``QR_LEEWAY``), purpose, the card's and the e-card's live status
        (in memory), then one-time use of ``jti`` (blocking; the verify route records it
        on the event loop: :meth:`check`, then :meth:`one_time_use`).
        """
        token = self.check(text, purpose=purpose, trust_list=trust_list, now=now)
        use = self.one_time_use(token, now=now)
        if not use.cache.first_use(use.key, ttl_seconds=use.ttl_seconds):
            raise replayed()
        return token

    def one_time_use(self, token: QrToken, *, now: datetime) -> OneTimeUse:
        """The record of ``token``'s ``jti``, kept until it could no longer be accepted."""
        ttl = max(1, int(token.expires_at.timestamp() - now.timestamp() + 2 * QR_LEEWAY.seconds))
        return OneTimeUse(self._replay, "qr:" + token.jti_text, ttl)

    def check(
        self, text: object, *, purpose: Purpose, trust_list: TrustList, now: datetime
    ) -> QrToken:
        """Every check of :meth:`verify` but one-time use, which it leaves to the caller
        (and so consumes nothing)."""
        if not isinstance(text, str):
            raise TokenRejectedError("format", "the token must be text")
        if len(text) > MAX_QR_TEXT:
            raise TokenRejectedError("size", f"{len(text)} characters, at most {MAX_QR_TEXT}")
        if not text.startswith(SCHEME_PREFIX):
            if text.count(".") == 2 and text.startswith("eyJ"):
                raise TokenRejectedError("prefix", f"a JWT, not a {SCHEME_PREFIX} QR token")
            raise TokenRejectedError("prefix", f"not a {SCHEME_PREFIX} QR token")
        try:
            token = verify_qr_token(
                text, trust_list=trust_list, now=now, leeway=QR_LEEWAY, purpose=purpose
            )
        except VerificationError as exc:
            raise TokenRejectedError(exc.check, exc.detail) from None
        except DecodeError as exc:
            raise TokenRejectedError("format", exc.detail) from None
        except CoreError as exc:  # pragma: no cover - every core error is one of the above
            raise TokenRejectedError("format", exc.detail) from None
        if token.issuer != self._issuer:
            raise TokenRejectedError("issuer", "not issued by this issuer")
        view = self.by_ref(token.ecard_ref, now=now)
        if view is None or view.status != (token.status_shard, token.status_idx):
            raise TokenRejectedError("ecard-unknown", "no such e-card")
        card_status, ecard_status = self.live_status(view)
        if card_status is not Status.VALID:
            check = "card-suspended" if card_status is Status.SUSPENDED else "card-revoked"
            raise TokenRejectedError(check, f"the holder's card is {card_status.name.lower()}")
        if ecard_status is not Status.VALID:
            check = "ecard-suspended" if ecard_status is Status.SUSPENDED else "ecard-revoked"
            raise TokenRejectedError(check, f"the e-card is {ecard_status.name.lower()}")
        return token

    def cached_trust_list(self) -> TrustList | None:
        return self._trust[1] if self._trust is not None else None

    def trust_due(self) -> bool:
        """At most once a second: is it time to look for a newer trust list?"""
        tick = time.monotonic()
        if tick - self._trust_checked < 1.0 and self._trust is not None:
            return False
        self._trust_checked = tick
        return True


def replayed() -> TokenRejectedError:
    """The refusal of a token whose ``jti`` was already used."""
    return TokenRejectedError("replayed", "this token was already used")


class _IndexTakenError(Exception):
    pass


def _device_key(jwk: Mapping[str, object]) -> VerifyingKey:
    if not isinstance(jwk, Mapping) or "d" in jwk:
        raise DeviceKeyError("the device key must be a public P-256 JWK")
    try:
        return VerifyingKey.from_jwk(jwk)
    except CoreError as exc:
        raise DeviceKeyError(f"invalid device key: {exc.detail}") from None


def _view(ecard: ECard, person: Person, card: Card, *, now: datetime) -> ECardView:
    return ECardView(
        id=ecard.id,
        ref=bytes.fromhex(ecard.ref),
        state=ecard.state,
        person_id=person.id,
        card_number=card.card_number,
        status=(ecard.status_shard, ecard.status_idx),
        card_status=(card.status_shard, card.status_idx),
        device_key=VerifyingKey.from_jwk(json.loads(ecard.device_jwk)),
        attributes=holder_attributes(person, card, now=now),
        card_expiry=card.expiry_date,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

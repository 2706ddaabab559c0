"""The clerk at the counter: signing in and out, and the clerk's own work at the issuer.

Decisions (also in the README, "The clerk at the counter"):

- **Sign-in** unlocks the clerk's sealed key (:mod:`reader_agent.clerks`) with the
  password and asks the issuer for an access token with ``private_key_jwt``; the token
  and the unlocked key live in memory only, for this one sign-in. If the issuer refuses
  the key (a suspended or removed clerk), nobody is signed in. If the issuer cannot be
  reached, the clerk is signed in *offline*: the password proved them to this counter,
  card transactions go on under the offline rules and carry the clerk's id, and the
  clerk's issuer work (look-ups, status changes, codes) waits until the counter is online
  (each such call fetches a token first).
- **One clerk at a time.** Signing in while another clerk is signed in signs that clerk
  out first (the page is cleared).
- **Signing out** (the button, an idle timeout, or another clerk signing in) forgets the
  key and token and ends the customer at the desk: card check, receipt and notice go.
- **Idle timeout**: no clerk request for ``idle`` (15 minutes by default) signs out. Only
  the clerk's own requests count, not the page's state polling.
- **Least privilege stays at the issuer**: the agent does not decide what a clerk may do;
  the clerk's token carries the role's scopes and the issuer refuses the rest (403), which
  the clerk reads as a plain refusal, with nothing changed.
- **Resuming a card** needs the card in the reader and the genuine-card check passed for
  it (document signature and chip challenge; the status may be "suspended", that is the
  point): a suspended card is resumed only with the card itself in front of the clerk.
  A loss report needs no card (the card is what is lost).
- **An e-card activated at the counter** binds the key in the wallet's 到柜台激活 QR code
  (``cardsvc.core.pairing``; the route parses it before the card is asked anything) for
  the holder of the card whose PIN was just verified; the answer carries the key's
  fingerprint for the clerk to compare with the phone. The issuer's refusals read in the
  clerk's words (already active on this phone, no card in use, the chip's answer refused).
- **ID numbers** are checked locally (format and check digit) before they leave the
  counter, go to the issuer in a request body, and are answered masked
  (``mask_citizen_id``); they are never logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cardsvc.core.errors import CoreError
from cardsvc.core.identity import CardNumber, CitizenId
from cardsvc.core.pairing import fingerprint
from reader_agent.clerks import (
    ClerkError,
    ClerkKey,
    ClerkLockedError,
    ClerkStore,
    WrongPasswordError,
)
from reader_agent.errors import IssuerError, IssuerUnreachableError
from reader_agent.issuer import CardRecord, IssuerClient
from reader_agent.page.clerk_texts import clerk_words
from reader_agent.page.desk import DeskError
from reader_agent.page.issuer_words import issuer_code, issuer_reason, issuer_technical
from reader_agent.page.views import mask_citizen_id, yuan
from wording import Message, beijing, text

__all__ = ["Clerks", "Shift"]

DEFAULT_IDLE = timedelta(minutes=15)


@dataclass
class Shift:
    """The clerk signed in now: who, their issuer client, and when they last acted."""

    key: ClerkKey
    issuer: IssuerClient
    signed_in_at: datetime
    last_active: datetime
    online: bool

    @property
    def client_id(self) -> str:
        return self.key.client_id

    @property
    def name(self) -> str:
        return self.key.display_name


class Clerks:
    """Who is signed in at this counter; thread-safe."""

    def __init__(
        self,
        *,
        store: ClerkStore,
        issuer_url: str,
        clock: Callable[[], datetime],
        end_customer: Callable[[], None],
        changed: Callable[[], None],
        idle: timedelta = DEFAULT_IDLE,
        timeout: float = 10.0,
    ) -> None:
        self.store = store
        self._issuer_url = issuer_url
        self._clock = clock
        self._end_customer = end_customer
        self._changed = changed
        self._idle = idle
        self._timeout = timeout
        self._lock = threading.Lock()
        self._shift: Shift | None = None
        #: Why the last clerk was signed out when not by their own hand (shown once).
        self._ended: str | None = None

    # -- the view --------------------------------------------------------------------

    def view(self) -> dict[str, Any] | None:
        with self._lock:
            shift = self._shift
            if shift is None:
                return None
            return {
                "client_id": shift.client_id, "name": shift.name, "online": shift.online,
                "signed_in_at": shift.signed_in_at.isoformat(),
                "idle_until": (shift.last_active + self._idle).isoformat(),
            }  # fmt: skip

    def clerk_id(self) -> str | None:
        """The signed-in clerk's client id (for transactions), None when nobody is."""
        shift = self.current()
        return shift.client_id if shift is not None else None

    # -- signing in and out ----------------------------------------------------------

    def sign_in(self, client_id: str, password: str, lang: str) -> tuple[Shift, str]:
        """Sign ``client_id`` in; the shift and the confirmation's detail. Refusals are
        DeskErrors in the clerk's words."""
        now = self._clock()
        try:
            key = self.store.unlock(client_id, password, now=now)
        except WrongPasswordError as exc:
            tries: Message | str = (
                Message("clerk.signin.wrong-password.tries", {"n": exc.tries_left})
                if exc.tries_left is not None else ""
            )  # fmt: skip
            words = clerk_words("signin.wrong-password", status=401, tries=tries,
                                extra={"tries_left": exc.tries_left})  # fmt: skip
            raise DeskError(words) from None
        except ClerkLockedError as exc:
            words = clerk_words("signin.locked", status=423, until=beijing(exc.until, lang),
                                extra={"locked_until": exc.until.isoformat()})  # fmt: skip
            raise DeskError(words) from None
        except ClerkError:
            raise DeskError(clerk_words("signin.damaged", status=409)) from None
        issuer = IssuerClient(self._issuer_url, client_id=key.client_id, signer=key.signer,
                              timeout=self._timeout)  # fmt: skip
        try:
            issuer.access_token()
            online = True
        except IssuerUnreachableError:
            online = False
        except IssuerError as exc:
            raise DeskError(clerk_words("signin.refused", status=403,
                                        extra={"issuer_status": exc.status})) from None  # fmt: skip
        shift = Shift(key=key, issuer=issuer, signed_in_at=now, last_active=now, online=online)
        self.sign_out(reason=None)  # whoever was signed in before
        with self._lock:
            self._shift = shift
            self._ended = None
        self._changed()
        detail_key = "clerk.signin.done.detail" if online else "clerk.signin.offline.detail"
        return shift, text(lang, detail_key, name=key.display_name, client_id=key.client_id)

    def sign_out(self, *, reason: str | None) -> bool:
        """Forget the clerk and clear the desk; whether someone was signed in."""
        with self._lock:
            shift, self._shift = self._shift, None
            if shift is not None and reason is not None:
                self._ended = reason
        if shift is None:
            return False
        self._end_customer()
        self._changed()
        return True

    def current(self) -> Shift | None:
        """The clerk signed in now (signing out one idle for too long)."""
        with self._lock:
            shift = self._shift
            idle = shift is not None and self._clock() - shift.last_active > self._idle
        if idle:
            self.sign_out(reason="expired")
            return None
        return shift

    def require(self, lang: str) -> Shift:
        """The clerk signed in now, or a refusal; the request counts as activity."""
        shift = self.current()
        if shift is None:
            with self._lock:
                expired = self._ended == "expired"
            if expired:
                raise DeskError(clerk_words("expired", status=401, extra={"reason": "expired"}))
            raise DeskError(clerk_words("needed", status=401))
        with self._lock:
            shift.last_active = self._clock()
        return shift

    # -- the clerk's work at the issuer -------------------------------------------------

    def look_up(self, shift: Shift, citizen_id: str, lang: str) -> dict[str, Any]:
        """A person by ID number: who, their cards, open entitlements (the ID masked)."""
        try:
            parsed = CitizenId.parse(citizen_id)
        except CoreError:
            raise DeskError(clerk_words("person.invalid-id", status=422)) from None
        try:
            person = shift.issuer.lookup_person(str(parsed))
            cards = shift.issuer.person_cards(person.id)
            entitlements = shift.issuer.person_entitlements(person.id)
            ecards = shift.issuer.person_ecards(person.id)
        except IssuerError as exc:
            raise DeskError(_issuer_words(exc, lang, not_found="person.not-found")) from None
        self._online(shift)
        return {
            "person": {
                "id": person.id, "name": person.name,
                "sex": "female" if person.sex == "F" else "male",
                "birth_date": person.birth_date, "region": person.region_code,
                "citizen_id_masked": mask_citizen_id(person.citizen_id),
                "deceased_on": person.deceased_on,
            },
            "cards": [_card_json(c) for c in cards],
            "ecards": [
                {"ecard_id": e.ecard_id, "card_number": e.card_number, "state": e.state,
                 "activated_via": e.activated_via, "activated_at": e.created_at}
                for e in ecards
            ],
            "entitlements": [
                {"id": e.id, "benefit": e.benefit, "period": e.period,
                 "amount_fen": e.amount_fen, "amount_yuan": yuan(e.amount_fen)}
                for e in entitlements if e.state == "open"
            ],
        }  # fmt: skip

    def change_status(
        self, shift: Shift, card_number: str, action: str, *, lang: str,
        proven_card: str | None,
    ) -> tuple[dict[str, Any], str, str]:  # fmt: skip
        """Resume a card (only the one proven in the reader) or report a loss; the card,
        the confirmation's title and detail."""
        try:
            number = str(CardNumber.parse(card_number))
        except CoreError:
            unknown = Message("counter.issuer.card-not-found")
            raise DeskError(clerk_words("card.wrong-state", status=422, reason=unknown)) from None
        if action == "resume" and proven_card != number:
            raise DeskError(clerk_words("card.not-checked", status=409, card_number=number))
        reasons = {
            "resume": "resumed at the counter after the card check",
            "report_temporary_loss": "temporary loss reported at the counter",
            "report_loss": "formal loss reported at the counter",
        }
        try:
            card = shift.issuer.change_card_status(number, action, reason=reasons[action])
        except IssuerError as exc:
            raise DeskError(_issuer_words(exc, lang, not_found="card.wrong-state")) from None
        self._online(shift)
        if action == "resume":
            return (_card_json(card), text(lang, "clerk.card.resumed.title"),
                    text(lang, "clerk.card.resumed.detail", card_number=number))  # fmt: skip
        what = text(lang, "clerk.card.loss-temporary" if action == "report_temporary_loss"
                    else "clerk.card.loss-formal")  # fmt: skip
        detail = text(lang, "clerk.card.loss-reported.detail", card_number=number, what=what)
        return _card_json(card), text(lang, "clerk.card.loss-reported.title"), detail

    def issue_code(self, shift: Shift, person_id: str, lang: str) -> dict[str, Any]:
        try:
            issued = shift.issuer.issue_activation_code(person_id)
        except IssuerError as exc:
            raise DeskError(_issuer_words(exc, lang, not_found="person.not-found")) from None
        self._online(shift)
        return {
            "code": issued.code, "expires_at": issued.expires_at.isoformat(),
            "attempts": issued.attempts,
            "title": text(lang, "clerk.ecard.code-issued.title"),
            "detail": text(lang, "clerk.ecard.code-issued.detail",
                           until=beijing(issued.expires_at, lang)),
            "next": text(lang, "clerk.ecard.code-issued.next"),
        }  # fmt: skip

    def activate_ecard(
        self, shift: Shift, chip_answer: Callable[[Callable[[str], bytes]], tuple[str, bytes]],
        device_jwk: dict[str, Any], lang: str,
    ) -> dict[str, Any]:  # fmt: skip
        """Activate the holder's e-card on their phone (``device_jwk``, the phone's public
        key) with the card in the reader: the issuer's nonce is signed by the chip of the
        card whose PIN was just verified (``chip_answer``: the desk's), in the clerk's name."""
        challenge: list[str] = []

        def nonce_for(card_number: str) -> bytes:
            text_, nonce = shift.issuer.counter_challenge(card_number)
            challenge.append(text_)
            return nonce

        try:
            _card, signature = chip_answer(nonce_for)
            activation = shift.issuer.activate_at_counter(challenge[0], signature, device_jwk)
        except IssuerError as exc:
            raise DeskError(_activation_words(exc, lang)) from None
        self._online(shift)
        shown = fingerprint(device_jwk)
        return {
            "ecard": {"ecard_id": activation.ecard_id, "ecard_ref": activation.ecard_ref,
                      "card_number": activation.card_number,
                      "holder_name": activation.holder_name,
                      "ecard_status": activation.ecard_status},
            "device_fingerprint": shown,
            "credential": activation.credential,
            "title": text(lang, "clerk.ecard.activated.title"),
            "detail": text(lang, "clerk.ecard.activated.detail", name=activation.holder_name,
                           card_number=activation.card_number),
            "next": text(lang, "clerk.ecard.activated.next", fingerprint=shown),
        }  # fmt: skip

    def _online(self, shift: Shift) -> None:
        if not shift.online:
            with self._lock:
                shift.online = True
            self._changed()


def _card_json(card: CardRecord) -> dict[str, Any]:
    return {
        "card_number": card.card_number, "state": card.state, "issue_date": card.issue_date,
        "expiry_date": card.expiry_date, "suspended_until": card.suspended_until,
        "revocation_reason": card.revocation_reason, "personalized": card.personalized,
    }  # fmt: skip


def _issuer_words(exc: IssuerError, lang: str, *, not_found: str) -> Any:
    """An issuer refusal of a clerk's call, in the clerk's words (the issuer's own,
    English ones only as the technical detail)."""
    if isinstance(exc, IssuerUnreachableError):
        return clerk_words("unreachable", status=503)
    reason = issuer_reason(exc.problem)
    extra = {"issuer_status": exc.status, "technical": issuer_technical(exc.problem, exc.detail)}
    if exc.status in (401, 403):
        return clerk_words("forbidden", status=403, extra=extra)
    if exc.status == 404:
        return clerk_words(not_found, status=404, reason=reason, extra=extra)
    if exc.status == 409:
        return clerk_words("card.wrong-state", status=409, reason=reason, extra=extra)
    return clerk_words("issuer-refused", status=502, reason=reason, extra=extra)


#: Refusals of a counter activation with words of their own, by the issuer's problem code
#: (and, for ``activation-failed``, its reason).
_ACTIVATION_REFUSALS = {
    "device-already-bound": "ecard.already-active",
    "invalid-device-key": "ecard.qr-invalid",
    "no-active-card": "ecard.no-active-card",
    "activation-failed": "ecard.chip-refused",
}


def _activation_words(exc: IssuerError, lang: str) -> Any:
    """An issuer refusal of a counter activation, in the clerk's words."""
    code = issuer_code(exc.problem)
    if exc.status in (409, 422) and code in _ACTIVATION_REFUSALS:
        technical = issuer_technical(exc.problem, exc.detail)
        return clerk_words(_ACTIVATION_REFUSALS[code], status=exc.status,
                           extra={"issuer_status": exc.status, "technical": technical})
    return _issuer_words(exc, lang, not_found="card.wrong-state")

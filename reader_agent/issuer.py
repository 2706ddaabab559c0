"""The agent's client of the issuer API, authenticated as one client: the counter
terminal, or a clerk signed in at the counter (:mod:`reader_agent.clerks`).

Each holds its own private key (registered with ``cardsvc clients create terminal --jwk``
or ``... operator --role clerk --jwk``); it proves itself with a ``private_key_jwt``
assertion (RFC 7523) and caches the short-lived access token it gets back. A clerk's
calls go with the clerk's own token, so the issuer's audit log names the clerk. Only the
standard library speaks HTTP here, so the agent needs no HTTP dependency.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import VerifyingKey, b64url_decode, b64url_encode
from cardsvc.core.qrtoken import Purpose
from cardsvc.core.signing import Signer
from reader_agent.errors import IssuerError, IssuerUnreachableError

#: Answers larger than this are not from our issuer (status shards are ~100 KB at most).
MAX_ANSWER = 8 * 1024 * 1024


class IssuerClient:
    """Calls the issuer as one client (a terminal or a clerk); thread-safe."""

    def __init__(
        self, base_url: str, *, client_id: str, signer: Signer, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._signer = signer
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (token, monotonic expiry)

    @property
    def signer(self) -> Signer:
        """The terminal's key (it also counter-signs transaction records)."""
        return self._signer

    def __repr__(self) -> str:
        return f"IssuerClient({self.base_url!r}, client_id={self.client_id!r})"

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        return _send(request, self.base_url, self._timeout)

    def _json(self, status: int, body: bytes, what: str) -> Any:
        return _json(status, body, what)

    def access_token(self) -> str:
        """A valid access token, fetched with a fresh client assertion when needed."""
        with self._lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            endpoint = f"{self.base_url}/v1/oauth/token"
            assertion = make_client_assertion(
                self._signer, client_id=self.client_id, audience=endpoint, now=datetime.now(UTC)
            )
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                }
            ).encode()
            request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
                endpoint,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            data = self._json(*self._send(request), "token")
            token, lifetime = data.get("access_token"), data.get("expires_in")
            if not isinstance(token, str) or not isinstance(lifetime, int):
                raise IssuerError("token: malformed token response")
            # Renew a little early so a request never leaves with a token about to expire.
            self._token = (token, time.monotonic() + max(0, lifetime - 30))
            return token

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """An authenticated JSON request; the answer must be a JSON object."""
        data = None if body is None else json.dumps(body).encode()
        headers = {
            **(headers or {}),
            "Authorization": f"Bearer {self.access_token()}",
            "Accept": "application/json",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
            f"{self.base_url}{path}", data=data, headers=headers, method=method
        )
        what = f"{method} {path}"
        answer = self._json(*self._send(request), what)
        if not isinstance(answer, dict):
            raise IssuerError(f"{what}: the answer is not a JSON object")
        return answer

    # -- one method per call the agent makes ------------------------------------------

    @property
    def bundle_url(self) -> str:
        """The verifier bundle the offline cache follows (public, no credentials)."""
        return f"{self.base_url}/v1/bundles/latest"

    def personalize(self, card_number: str, chip_key: VerifyingKey) -> str:
        """Send the chip's public key; the issuer answers with the signed card document."""
        jwk = {k: v for k, v in chip_key.jwk().items() if k in ("kty", "crv", "x", "y")}
        path = f"/v1/cards/{urllib.parse.quote(card_number)}/personalization"
        document = self._call("POST", path, {"chip_jwk": jwk}).get("document")
        if not isinstance(document, str):
            raise IssuerError("personalization: the answer holds no card document")
        return document

    def terminal_certificate(self) -> str:
        """This terminal's certificate (compact JWS), for records signed offline."""
        certificate = self._call("POST", "/v1/terminal-certificates", {}).get("certificate")
        if not isinstance(certificate, str):
            raise IssuerError("terminal-certificates: malformed answer")
        return certificate

    def transaction_challenge(self) -> bytes:
        """A fresh issuer nonce for one online transaction."""
        nonce = self._call("POST", "/v1/transactions/challenges", {}).get("nonce")
        if not isinstance(nonce, str):
            raise IssuerError("challenge: malformed answer")
        try:
            return b64url_decode(nonce, what="nonce")
        except CoreError:
            raise IssuerError("challenge: malformed nonce") from None

    def submit_transaction(
        self, record: Mapping[str, Any], *, certificate: str, idempotency_key: str,
        clerk_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One signed record online, with the clerk signed in at the counter; the issuer's
        answer (the stored transaction)."""
        body = {**record, "terminal_certificate": certificate}
        if clerk_id is not None:
            body["clerk_id"] = clerk_id
        return self._call(
            "POST", "/v1/transactions", body, headers={"Idempotency-Key": idempotency_key}
        )

    def upload_batch(
        self, items: Sequence[Mapping[str, Any]], *, certificate: str
    ) -> list[BatchResult]:
        """Records (or voids) signed offline; one result per item the issuer settled."""
        answer = self._call(
            "POST", "/v1/transactions/batches",
            {"terminal_certificate": certificate, "records": list(items)},
        )  # fmt: skip
        results = answer.get("results")
        if not isinstance(results, list):
            raise IssuerError("batch: malformed answer")
        return [
            BatchResult(
                seq=r["seq"],
                outcome=str(r.get("outcome")),
                reason=r.get("reason") if isinstance(r.get("reason"), str) else None,
                answer=r,
            )
            for r in results
            if isinstance(r, dict) and isinstance(r.get("seq"), int)
            and not isinstance(r.get("seq"), bool)
        ]

    def open_entitlements(self, card_number: str) -> list[OpenEntitlement]:
        """The holder's entitlements this terminal may pay out now."""
        path = f"/v1/cards/{urllib.parse.quote(card_number)}/open-entitlements"
        items = self._call("GET", path).get("items")
        if not isinstance(items, list):
            raise IssuerError("open entitlements: malformed answer")
        return [
            OpenEntitlement(
                id=str(i.get("id")),
                benefit=str(i.get("benefit")),
                period=str(i.get("period")),
                amount_fen=i["amount_fen"],
            )
            for i in items
            if isinstance(i, dict) and isinstance(i.get("amount_fen"), int)
        ]

    # -- a clerk's calls (with the clerk's own token) ---------------------------------

    def lookup_person(self, citizen_id: str) -> PersonRecord:
        """The person with this ID number (sent in the body, never in a URL)."""
        return PersonRecord.of(self._call("POST", "/v1/persons/lookup", {"citizen_id": citizen_id}))

    def person_cards(self, person_id: str) -> list[CardRecord]:
        """The person's cards, newest last (every page)."""
        path = f"/v1/persons/{urllib.parse.quote(person_id)}/cards"
        return [CardRecord.of(i) for i in self._pages(path, "cards")]

    def person_entitlements(self, person_id: str) -> list[EntitlementRecord]:
        """The person's entitlements in every state (every page)."""
        path = f"/v1/persons/{urllib.parse.quote(person_id)}/entitlements"
        return [EntitlementRecord.of(i) for i in self._pages(path, "entitlements")]

    def person_ecards(self, person_id: str) -> list[ECardRecord]:
        """The person's e-cards, newest first."""
        path = f"/v1/persons/{urllib.parse.quote(person_id)}/ecards"
        items = self._call("GET", path).get("items")
        if not isinstance(items, list):
            raise IssuerError("e-cards: malformed answer")
        return [ECardRecord.of(i) for i in items if isinstance(i, dict)]

    def change_card_status(self, card_number: str, action: str, *, reason: str) -> CardRecord:
        """``report_temporary_loss``, ``resume``, ``report_loss`` or ``revoke``."""
        path = f"/v1/cards/{urllib.parse.quote(card_number)}/status-changes"
        return CardRecord.of(self._call("POST", path, {"action": action, "reason": reason}))

    def issue_activation_code(self, person_id: str) -> ActivationCode:
        """A one-time e-card activation code for the person (earlier open codes end)."""
        path = f"/v1/persons/{urllib.parse.quote(person_id)}/ecard-activation-codes"
        answer = self._call("POST", path, {})
        code, expires = answer.get("code"), answer.get("expires_at")
        attempts = answer.get("attempts")
        if not (isinstance(code, str) and isinstance(expires, str) and isinstance(attempts, int)):
            raise IssuerError("activation code: malformed answer")
        return ActivationCode(code=code, expires_at=_instant(expires, "expires_at"),
                              attempts=attempts)  # fmt: skip

    def counter_challenge(self, card_number: str) -> tuple[str, bytes]:
        """(challenge, nonce): the nonce goes to the chip, the challenge back with its answer."""
        answer = self._call("POST", "/v1/ecards/counter-challenges", {"card_number": card_number})
        challenge, nonce = answer.get("challenge"), answer.get("nonce")
        if not isinstance(challenge, str) or not isinstance(nonce, str):
            raise IssuerError("counter challenge: malformed answer")
        try:
            return challenge, b64url_decode(nonce, what="nonce")
        except CoreError:
            raise IssuerError("counter challenge: malformed nonce") from None

    def activate_at_counter(
        self, challenge: str, chip_signature: bytes, device_jwk: Mapping[str, Any]
    ) -> CounterActivation:
        """Bind the phone's key to the card's holder: the chip answered ``challenge`` and
        the holder's PIN was verified on the card at this counter."""
        answer = self._call("POST", "/v1/ecards/counter-activations", {
            "challenge": challenge, "chip_signature": b64url_encode(chip_signature),
            "pin_verified": True, "device_jwk": dict(device_jwk)})  # fmt: skip
        return CounterActivation(
            ecard_id=_text(answer, "ecard_id", "activation"),
            ecard_ref=_text(answer, "ecard_ref", "activation"),
            card_number=_text(answer, "card_number", "activation"),
            holder_name=_text(answer, "holder_name", "activation"),
            ecard_status=_text(answer, "ecard_status", "activation"),
            credential=_text(answer, "credential", "activation"),
        )

    def _pages(self, path: str, what: str, *, most: int = 20) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(most):
            query = "?limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            answer = self._call("GET", path + query)
            page, cursor = answer.get("items"), answer.get("next_cursor")
            if not isinstance(page, list):
                raise IssuerError(f"{what}: malformed answer")
            items.extend(i for i in page if isinstance(i, dict))
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    def verify_token(self, text: str, purpose: Purpose) -> VerifiedToken:
        """Online verification of a QR token; a refusal raises IssuerError (its problem
        names the failed ``check``)."""
        answer = self._call("POST", "/v1/verify", {"token": text, "purpose": purpose.name.lower()})
        claims = answer.get("claims")
        if not isinstance(claims, dict):
            raise IssuerError("verify: malformed answer")
        attributes, expires = claims.get("attributes"), claims.get("exp")
        return VerifiedToken(
            attributes=attributes if isinstance(attributes, dict) else {},
            expires_at=expires if isinstance(expires, int) else None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchResult:
    """The issuer's answer to one item of an uploaded batch."""

    seq: int
    outcome: str  # accepted | duplicate | conflict | rejected | retry | void ...
    reason: str | None
    answer: dict[str, Any]  # kept whole in the journal


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenEntitlement:
    id: str
    benefit: str
    period: str
    amount_fen: int


def _instant(value: object, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise IssuerError(f"{what}: not a date and time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise IssuerError(f"{what}: malformed answer ({key})")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class PersonRecord:
    """A person as the issuer answers a look-up (the full ID number: mask it to show)."""

    id: str
    citizen_id: str
    name: str
    sex: str  # M | F
    birth_date: str
    region_code: str
    deceased_on: str | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> PersonRecord:
        deceased = data.get("deceased_on")
        return cls(
            id=_text(data, "id", "person"), citizen_id=_text(data, "citizen_id", "person"),
            name=_text(data, "name", "person"), sex=_text(data, "sex", "person"),
            birth_date=_text(data, "birth_date", "person"),
            region_code=_text(data, "region_code", "person"),
            deceased_on=deceased if isinstance(deceased, str) else None,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class CardRecord:
    card_number: str
    state: str  # pending_personalization | active | suspended | revoked | expired
    issue_date: str
    expiry_date: str
    suspended_until: str | None
    revocation_reason: str | None
    personalized: bool

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> CardRecord:
        until, reason = data.get("suspended_until"), data.get("revocation_reason")
        return cls(
            card_number=_text(data, "card_number", "card"), state=_text(data, "state", "card"),
            issue_date=_text(data, "issue_date", "card"),
            expiry_date=_text(data, "expiry_date", "card"),
            suspended_until=until if isinstance(until, str) else None,
            revocation_reason=reason if isinstance(reason, str) else None,
            personalized=data.get("personalized") is True,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class EntitlementRecord:
    id: str
    benefit: str
    period: str
    amount_fen: int
    state: str  # open | collected | stopped

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> EntitlementRecord:
        amount = data.get("amount_fen")
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise IssuerError("entitlement: malformed answer (amount_fen)")
        return cls(id=_text(data, "id", "entitlement"),
                   benefit=_text(data, "benefit", "entitlement"),
                   period=_text(data, "period", "entitlement"), amount_fen=amount,
                   state=_text(data, "state", "entitlement"))  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class ECardRecord:
    ecard_id: str
    card_number: str
    state: str  # active | replaced | revoked
    activated_via: str  # code | counter
    created_at: str

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ECardRecord:
        return cls(ecard_id=_text(data, "ecard_id", "e-card"),
                   card_number=_text(data, "card_number", "e-card"),
                   state=_text(data, "state", "e-card"),
                   activated_via=_text(data, "activated_via", "e-card"),
                   created_at=_text(data, "created_at", "e-card"))  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class CounterActivation:
    """An e-card activated at the counter; ``credential`` is for the holder's phone."""

    ecard_id: str
    ecard_ref: str
    card_number: str
    holder_name: str
    ecard_status: str
    credential: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ActivationCode:
    code: str
    expires_at: datetime
    attempts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifiedToken:
    """A QR token the issuer verified: what its purpose discloses, and until when."""

    attributes: dict[str, Any]
    expires_at: int | None


def _send(request: urllib.request.Request, base_url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status), answer.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(MAX_ANSWER + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IssuerUnreachableError(f"issuer {base_url} unreachable: {exc}") from None


def _json(status: int, body: bytes, what: str) -> Any:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if status >= 400:
        detail = data.get("detail") if isinstance(data, dict) else None
        raise IssuerError(
            f"{what}: issuer answered {status}: {detail or 'no detail'}",
            status=status,
            problem=data,
        )
    if data is None:
        raise IssuerError(f"{what}: issuer answered {status} without JSON", status=status)
    return data


def reachable(base_url: str, *, timeout: float = 2.0) -> bool:
    """Whether the issuer answers its public ``GET /health`` (no credentials needed)."""
    request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
        f"{base_url.rstrip('/')}/health", headers={"Accept": "application/json"}
    )
    try:
        status, _body = _send(request, base_url, timeout)
    except IssuerUnreachableError:
        return False
    return status < 500

"""The signed transaction record, shared by the reader agent and the issuer.

No database or web imports: the agent builds and signs records with this module, the
issuer parses and verifies them with it.

A record is proved three times over:

- the **card** signs ``"cardsvc-transaction-v1" 00 ‖ nonce ‖ counter ‖ data``
  (SIGN TRANSACTION, docs/card-protocol.md), so the real card was present with its PIN;
- the **terminal** signs ``"cardsvc-terminal-record-v1" 00 ‖ nonce ‖ counter ‖ card
  signature ‖ data`` with the key the issuer certified (:func:`issue_terminal_certificate`);
- the **issuer** answers an accepted record with a receipt (``cardsvc-receipt+jwt``).

``data`` is the canonical JSON of :class:`TransactionData` (sorted keys, no spaces, UTF-8),
at most 1024 bytes: what the card signs is exactly what the issuer reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cardsvc.core.errors import DecodeError, VerificationError
from cardsvc.core.jws import check_times, strict_json_object, verify_jws
from cardsvc.core.keys import VerifyingKey, b64url_decode, b64url_encode
from cardsvc.core.signing import Signer, sign_jws

CARD_CONTEXT = b"cardsvc-transaction-v1\x00"
TERMINAL_CONTEXT = b"cardsvc-terminal-record-v1\x00"
NONCE_LENGTH = 16
MAX_DATA = 1024
CURRENCY = "CNY"
#: Largest amount one transaction may carry (10 million yuan).
MAX_AMOUNT_FEN = 1_000_000_000
MAX_COUNTER = 0xFFFFFFFF
TERMINAL_CERTIFICATE_TYP = "cardsvc-terminal+jwt"
RECEIPT_TYP = "cardsvc-receipt+jwt"
_REFERENCE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
_CARD_NUMBER = re.compile(r"[A-Z0-9]{9}")
_TERMINAL = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Kind(StrEnum):
    """What a transaction records: an identity verification, a benefit collected, a fee paid."""

    IDENTITY = "identity"
    BENEFIT = "benefit"
    FEE = "fee"


def _int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DecodeError("transaction", f"{name} must be an integer in {low}..{high}")
    return value


@dataclass(frozen=True, kw_only=True)
class TransactionData:
    """What the card signs: type, card, terminal and its sequence, time, amount and
    what is paid (an entitlement for a benefit, a bill reference for a fee)."""

    kind: Kind
    card: str
    terminal: str
    seq: int
    at: int  # Unix seconds
    amount_fen: int
    entitlement: uuid.UUID | None = None
    reference: str | None = None
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        if not _CARD_NUMBER.fullmatch(self.card):
            raise DecodeError("transaction", "card must be a 9-character card number")
        if not _TERMINAL.fullmatch(self.terminal):
            raise DecodeError("transaction", "terminal must be a client id")
        _int(self.seq, "seq", 1, 2**53)
        _int(self.at, "at", 0, 253402300799)
        _int(self.amount_fen, "amount", 0, MAX_AMOUNT_FEN)
        if self.currency != CURRENCY:
            raise DecodeError("transaction", f"currency must be {CURRENCY}")
        if self.reference is not None and not _REFERENCE.fullmatch(self.reference):
            raise DecodeError("transaction", "reference must be 1-64 of A-Z a-z 0-9 . _ : / -")
        if self.kind is Kind.IDENTITY:
            if self.amount_fen != 0 or self.entitlement is not None:
                raise DecodeError("transaction", "an identity verification carries no amount")
        elif self.kind is Kind.BENEFIT:
            if self.entitlement is None or self.amount_fen < 1:
                raise DecodeError("transaction", "a benefit collection names its entitlement")
        elif self.entitlement is not None or self.amount_fen < 1 or self.reference is None:
            raise DecodeError("transaction", "a fee payment has an amount and a reference")

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def to_json(self) -> dict[str, object]:
        return {
            "v": 1,
            "type": self.kind.value,
            "card": self.card,
            "terminal": self.terminal,
            "seq": self.seq,
            "at": self.at,
            "amount": self.amount_fen,
            "currency": self.currency,
            "entitlement": str(self.entitlement) if self.entitlement else None,
            "reference": self.reference,
        }

    def encode(self) -> bytes:
        data = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        if len(data) > MAX_DATA:  # pragma: no cover - bounded by the field limits
            raise DecodeError("transaction", "transaction data longer than 1024 bytes")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> TransactionData:
        """Parse card-signed data; every failure is a :class:`DecodeError`."""
        if not 1 <= len(data) <= MAX_DATA:
            raise DecodeError("transaction", f"data must be 1..{MAX_DATA} bytes")
        obj = strict_json_object(data, what="transaction")
        expected = {"v", "type", "card", "terminal", "seq", "at", "amount", "currency",
                    "entitlement", "reference"}  # fmt: skip
        if set(obj) != expected:
            raise DecodeError("transaction", f"members must be {', '.join(sorted(expected))}")
        if obj["v"] != 1:
            raise DecodeError("transaction", "unsupported version")
        try:
            kind = Kind(obj["type"])
        except (ValueError, TypeError):
            raise DecodeError("transaction", "type must be identity, benefit or fee") from None
        entitlement = None
        if obj["entitlement"] is not None:
            try:
                entitlement = uuid.UUID(str(obj["entitlement"]))
            except ValueError:
                raise DecodeError("transaction", "entitlement must be a UUID") from None
        for name in ("card", "terminal", "currency"):
            if not isinstance(obj[name], str):
                raise DecodeError("transaction", f"{name} must be a string")
        if obj["reference"] is not None and not isinstance(obj["reference"], str):
            raise DecodeError("transaction", "reference must be a string")
        parsed = cls(
            kind=kind,
            card=obj["card"],
            terminal=obj["terminal"],
            seq=_int(obj["seq"], "seq", 1, 2**53),
            at=_int(obj["at"], "at", 0, 253402300799),
            amount_fen=_int(obj["amount"], "amount", 0, MAX_AMOUNT_FEN),
            entitlement=entitlement,
            reference=obj["reference"],
            currency=obj["currency"],
        )
        if parsed.encode() != data:
            raise DecodeError("transaction", "data is not in canonical form")
        return parsed


def card_message(nonce: bytes, counter: int, data: bytes) -> bytes:
    """The bytes the chip signs for SIGN TRANSACTION."""
    return CARD_CONTEXT + nonce + counter.to_bytes(4, "big") + data


def terminal_message(nonce: bytes, counter: int, card_signature: bytes, data: bytes) -> bytes:
    """The bytes the terminal signs over the card's answer."""
    return TERMINAL_CONTEXT + nonce + counter.to_bytes(4, "big") + card_signature + data


@dataclass(frozen=True, kw_only=True)
class SignedRecord:
    """A transaction as it travels: card-signed data with both signatures."""

    nonce: bytes
    data: bytes
    counter: int
    card_signature: bytes
    terminal_signature: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != NONCE_LENGTH:
            raise DecodeError("transaction", f"nonce must be {NONCE_LENGTH} bytes")
        _int(self.counter, "counter", 1, MAX_COUNTER)
        for name in ("card_signature", "terminal_signature"):
            if len(getattr(self, name)) != 64:
                raise DecodeError("transaction", f"{name} must be 64 bytes (r||s)")

    @property
    def transaction(self) -> TransactionData:
        return TransactionData.from_bytes(self.data)

    def digest(self) -> str:
        """SHA-256 (hex) of everything the record proves: its identity in the journal."""
        return hashlib.sha256(
            terminal_message(self.nonce, self.counter, self.card_signature, self.data)
            + self.terminal_signature
        ).hexdigest()

    def to_json(self) -> dict[str, object]:
        return {
            "nonce": b64url_encode(self.nonce),
            "data": b64url_encode(self.data),
            "counter": self.counter,
            "card_signature": b64url_encode(self.card_signature),
            "terminal_signature": b64url_encode(self.terminal_signature),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SignedRecord:
        if not isinstance(obj, Mapping):
            raise DecodeError("transaction", "record must be an object")
        try:
            return cls(
                nonce=b64url_decode(obj["nonce"], what="nonce"),
                data=b64url_decode(obj["data"], what="data"),
                counter=_int(obj["counter"], "counter", 1, MAX_COUNTER),
                card_signature=b64url_decode(obj["card_signature"], what="card_signature"),
                terminal_signature=b64url_decode(
                    obj["terminal_signature"], what="terminal_signature"
                ),
            )
        except KeyError as exc:
            raise DecodeError("transaction", f"missing member {exc.args[0]}") from None

    @classmethod
    def sign(
        cls, *, nonce: bytes, data: bytes, counter: int, card_signature: bytes, terminal: Signer
    ) -> SignedRecord:
        """Counter-sign the card's answer with the terminal's key."""
        signature = terminal.sign(terminal_message(nonce, counter, card_signature, data))
        return cls(
            nonce=nonce,
            data=data,
            counter=counter,
            card_signature=card_signature,
            terminal_signature=signature,
        )

    def verify(self, *, chip_key: VerifyingKey, terminal_key: VerifyingKey) -> TransactionData:
        """Check both signatures and parse the data; raises a typed error naming the check."""
        try:
            chip_key.verify_raw(
                self.card_signature, card_message(self.nonce, self.counter, self.data)
            )
        except VerificationError:
            raise VerificationError(
                "card-signature", "the card's signature does not verify"
            ) from None
        try:
            terminal_key.verify_raw(
                self.terminal_signature,
                terminal_message(self.nonce, self.counter, self.card_signature, self.data),
            )
        except VerificationError:
            raise VerificationError(
                "terminal-signature", "the terminal's signature does not verify"
            ) from None
        return self.transaction


# -- terminal certificates and receipts --------------------------------------------------


def issue_terminal_certificate(
    signer: Signer,
    *,
    issuer: str,
    terminal_id: str,
    name: str,
    key: VerifyingKey,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """The issuer certifies a terminal's public key (compact JWS, terminal-certificate key)."""
    jwk = {k: v for k, v in key.jwk().items() if k in ("kty", "crv", "x", "y")}
    claims = {
        "iss": issuer,
        "sub": terminal_id,
        "name": name,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "cnf": {"jwk": jwk},
    }
    return sign_jws({"typ": TERMINAL_CERTIFICATE_TYP}, claims, signer)


@dataclass(frozen=True, kw_only=True)
class TerminalCertificate:
    terminal_id: str
    name: str
    key: VerifyingKey
    expires_at: datetime


def verify_terminal_certificate(
    token: str,
    *,
    key_for: Callable[[Mapping[str, Any]], VerifyingKey],
    issuer: str,
    now: datetime,
    leeway: timedelta,
) -> TerminalCertificate:
    """Verify a terminal certificate; ``key_for`` must pick a terminal-certificate key."""
    verified = verify_jws(token, typ=TERMINAL_CERTIFICATE_TYP, key_for=key_for)
    claims = verified.claims
    check_times(claims, now=now, leeway=leeway)
    if claims.get("iss") != issuer:
        raise VerificationError("issuer", "the certificate is from another issuer")
    sub, name, cnf = claims.get("sub"), claims.get("name"), claims.get("cnf")
    if not isinstance(sub, str) or not isinstance(name, str) or not isinstance(cnf, dict):
        raise VerificationError("claims", "certificate needs sub, name and cnf")
    jwk = cnf.get("jwk")
    if not isinstance(jwk, dict):
        raise VerificationError("claims", "certificate cnf holds no jwk")
    return TerminalCertificate(
        terminal_id=sub,
        name=name,
        key=VerifyingKey.from_jwk(jwk),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


def issue_receipt(
    signer: Signer,
    *,
    issuer: str,
    transaction_id: uuid.UUID,
    record: SignedRecord,
    data: TransactionData,
    now: datetime,
) -> str:
    """The issuer's signed receipt for an accepted transaction."""
    claims = {
        "iss": issuer,
        "sub": str(transaction_id),
        "iat": int(now.timestamp()),
        "txn": {**data.to_json(), "counter": record.counter},
        "record": record.digest(),
    }
    return sign_jws({"typ": RECEIPT_TYP}, claims, signer)

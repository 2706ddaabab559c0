"""The card document: the issuer-signed facts written on a card's chip.

A compact JWS with ``typ`` ``ssc-card+jwt``, signed by a ``card-document`` key from the
trust list. It binds the cardholder's identity to the chip's own public key (the RFC 7800
``cnf`` claim): the signature proves the data, and only a challenge signed by that chip
key proves the card in the reader is the card the issuer personalised.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode, Sex
from cardsvc.core.jws import check_times, verify_jws
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import Signer, sign_jws
from cardsvc.core.trustlist import TrustList

CARD_DOCUMENT_TYP = "ssc-card+jwt"
#: A card document is written into a chip file: a few KB at most.
MAX_CARD_DOCUMENT_SIZE = 8 * 1024
MAX_NAME_LENGTH = 64
#: Card dates are calendar dates in China; a card expires at the end of its expiry day.
CHINA_TZ = timezone(timedelta(hours=8))

_CLAIMS = frozenset(
    {
        "iss",
        "iat",
        "nbf",
        "exp",
        "card_no",
        "id_no",
        "name",
        "sex",
        "birth_date",
        "region",
        "issued",
        "expires",
        "cnf",
        "status",
    }
)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise DecodeError("card document", "name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise DecodeError("card document", f"name longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise DecodeError("card document", "name contains control or unassigned characters")
    if name != name.strip():
        raise DecodeError("card document", "name has leading or trailing whitespace")
    return name


def _date(value: object, what: str) -> date:
    if not isinstance(value, str) or len(value) != 10:
        raise DecodeError("card document", f"{what} must be a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DecodeError("card document", f"{what} {value!r} is not a calendar date") from None


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), CHINA_TZ).astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class CardDocument:
    """The verified (or about to be signed) contents of a card document."""

    issuer: str
    card_number: CardNumber
    citizen_id: CitizenId
    name: str
    sex: Sex
    birth_date: date
    region: RegionCode
    issue_date: date
    expiry_date: date
    chip_key: VerifyingKey
    status: StatusReference
    issued_at: datetime

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sex is not self.citizen_id.sex:
            raise DecodeError("card document", "sex does not match the citizen ID number")
        if self.birth_date != self.citizen_id.birth_date:
            raise DecodeError("card document", "birth date does not match the citizen ID number")
        if self.expiry_date <= self.issue_date:
            raise DecodeError("card document", "expiry date is not after the issue date")
        if self.issued_at.tzinfo is None:
            raise DecodeError("card document", "issued_at must be timezone-aware")

    @property
    def expires_at(self) -> datetime:
        """The moment the card stops being valid: the end of its expiry day, China time."""
        return _end_of_day(self.expiry_date)

    def to_claims(self) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
            "card_no": str(self.card_number),
            "id_no": str(self.citizen_id),
            "name": self.name,
            "sex": self.sex.value,
            "birth_date": self.birth_date.isoformat(),
            "region": str(self.region),
            "issued": self.issue_date.isoformat(),
            "expires": self.expiry_date.isoformat(),
            "cnf": {"jwk": {k: v for k, v in self.chip_key.jwk().items() if k != "alg"}},
            "status": self.status.to_json(),
        }

    def sign(self, signer: Signer) -> str:
        """Encode as a compact JWS signed by a ``card-document`` key."""
        return sign_jws({"typ": CARD_DOCUMENT_TYP}, self.to_claims(), signer)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> CardDocument:
        """Build from verified claims; every malformed field raises :class:`DecodeError`."""
        missing = _CLAIMS - {"nbf"} - set(claims)
        if missing:
            raise VerificationError("claims", f"missing claims: {', '.join(sorted(missing))}")
        unknown = set(claims) - _CLAIMS
        if unknown:
            raise VerificationError("claims", f"unknown claims: {', '.join(sorted(unknown))}")
        try:
            cnf = claims["cnf"]
            if not isinstance(cnf, Mapping) or set(cnf) != {"jwk"}:
                raise DecodeError("card document", "cnf must hold exactly the chip's jwk")
            issuer = claims["iss"]
            if not isinstance(issuer, str) or not issuer:
                raise DecodeError("card document", "iss must be a non-empty string")
            sex = claims["sex"]
            if sex not in ("M", "F"):
                raise DecodeError("card document", "sex must be M or F")
            iat = claims["iat"]
            if isinstance(iat, bool) or not isinstance(iat, int):
                raise DecodeError("card document", "iat must be an integer")
            doc = cls(
                issuer=issuer,
                card_number=CardNumber.parse(claims["card_no"]),
                citizen_id=CitizenId.parse(claims["id_no"]),
                name=_check_name(claims["name"]),
                sex=Sex(sex),
                birth_date=_date(claims["birth_date"], "birth_date"),
                region=RegionCode.parse(claims["region"]),
                issue_date=_date(claims["issued"], "issued"),
                expiry_date=_date(claims["expires"], "expires"),
                chip_key=VerifyingKey.from_jwk(cnf["jwk"]),
                status=StatusReference.from_json(claims["status"]),
                issued_at=datetime.fromtimestamp(iat, UTC),
            )
        except CoreError as exc:
            if isinstance(exc, VerificationError):
                raise
            raise VerificationError("claims", exc.detail) from None
        except (OverflowError, OSError, ValueError, TypeError) as exc:
            raise VerificationError("claims", f"malformed claim: {exc}") from None
        if claims["exp"] != int(doc.expires_at.timestamp()):
            raise VerificationError("claims", "exp does not match the card's expiry date")
        return doc


def verify_card_document(
    token: str,
    *,
    trust_list: TrustList,
    now: datetime,
    leeway: timedelta,
    issuer: str | None = None,
) -> CardDocument:
    """Verify a card document and return its contents.

    The key must be in ``trust_list`` for purpose ``card-document`` and in its window at
    ``now``; the algorithm is the key's (never the header's); ``iat``/``nbf``/``exp`` are
    checked with ``leeway``; ``issuer``, if given, must equal ``iss``. Raises
    :class:`VerificationError` naming the failed check, or :class:`DecodeError`.
    """

    def key_for(header: Mapping[str, Any]) -> VerifyingKey:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise VerificationError("key-unknown", "header has no kid")
        return trust_list.find(kid, KeyPurpose.CARD_DOCUMENT, now=now).key

    verified = verify_jws(
        token, typ=CARD_DOCUMENT_TYP, key_for=key_for, max_size=MAX_CARD_DOCUMENT_SIZE
    )
    check_times(verified.claims, now=now, leeway=leeway)
    trusted = trust_list.find(verified.key.kid, KeyPurpose.CARD_DOCUMENT, now=now)
    doc = CardDocument.from_claims(verified.claims)
    if doc.issued_at < trusted.not_before - leeway:
        raise VerificationError("key-window", "signed before its key was valid")
    if issuer is not None and doc.issuer != issuer:
        raise VerificationError("issuer", f"iss {doc.issuer!r} is not {issuer!r}")
    return doc

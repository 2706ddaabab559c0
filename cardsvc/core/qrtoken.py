"""E-card QR tokens: CWT claims in a COSE_Sign1 (ES256/SM2SM3), base45, behind a prefix.

Wire form: ``SSC1:`` + base45(COSE_Sign1(CWT claims)). The prefix names the scheme and
its version; every character of the result is in the QR alphanumeric set, so a typical
identity token fits QR version 10 at error correction M.

CWT claims (RFC 8392): 1 iss, 4 exp, 6 iat, 7 cti (the one-time ``jti``, 8 random bytes).
Everything of ours sits in one private-use claim, ``-65537``, as a compact map::

    {1: purpose, 2: e-card reference (bytes), 3: [status shard, status index],
     4: {attribute: value, ...}}

Each purpose discloses only its own attributes (:data:`PURPOSE_ATTRIBUTES`); a token
carrying any other attribute is refused by the encoder and by the verifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.identity import CitizenId, gb11643_check_character
from cardsvc.core.keys import KeyPurpose, b64url_encode, short_kid
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import Signer
from cardsvc.core.trustlist import TrustList

SCHEME_PREFIX = "SSC1:"
#: Version 40-L holds 4,296 alphanumeric characters; no QR token can be longer.
MAX_QR_TEXT = 4296
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI = 1, 4, 6, 7
CLAIM_SSC = -65537  # first private-use CWT claim key (RFC 8392 section 9.1)
_SSC_PURPOSE, _SSC_ECARD, _SSC_STATUS, _SSC_ATTRS = 1, 2, 3, 4
_CLAIM_KEYS = frozenset({1, 4, 6, 7, -65537})
_SSC_KEYS = frozenset({_SSC_PURPOSE, _SSC_ECARD, _SSC_STATUS, _SSC_ATTRS})
_SSC_KEYS_NO_ATTRS = frozenset({_SSC_PURPOSE, _SSC_ECARD, _SSC_STATUS})
JTI_BYTES = 8
ECARD_REF_BYTES = 8
MAX_NAME = 64


class Purpose(IntEnum):
    """What a QR token may be used for; each token serves exactly one."""

    IDENTITY = 1
    BENEFIT = 2
    MEDICAL = 3
    FEE = 4
    TRANSPORT = 5
    TOURISM = 6
    CULTURE = 7


class Attribute(IntEnum):
    """Attributes a token can disclose, as compact integer keys."""

    NAME = 1  # text
    ID_NO = 2  # citizen ID number, text
    PHOTO_REF = 3  # opaque reference to the enrolment photo, bytes
    CONCESSION = 4  # concession category code, small int (e.g. 1 senior, 2 disabled)
    CONCESSION_UNTIL = 5  # last valid day of the concession, days since 1970-01-01
    AGE_OVER = 6  # an age threshold the holder meets (60, 65, 70), int
    INSURED_REGION = 7  # region code of the holder's insurance, text


#: Minimal disclosure: what each purpose's verifier may learn, and nothing more.
PURPOSE_ATTRIBUTES: Mapping[Purpose, frozenset[Attribute]] = MappingProxyType(
    {
        Purpose.IDENTITY: frozenset({Attribute.NAME, Attribute.ID_NO, Attribute.PHOTO_REF}),
        Purpose.BENEFIT: frozenset({Attribute.NAME, Attribute.ID_NO}),
        Purpose.MEDICAL: frozenset({Attribute.NAME, Attribute.ID_NO, Attribute.INSURED_REGION}),
        Purpose.FEE: frozenset({Attribute.NAME, Attribute.ID_NO}),
        Purpose.TRANSPORT: frozenset({Attribute.CONCESSION, Attribute.CONCESSION_UNTIL}),
        Purpose.TOURISM: frozenset({Attribute.CONCESSION, Attribute.AGE_OVER}),
        Purpose.CULTURE: frozenset({Attribute.CONCESSION, Attribute.AGE_OVER}),
    }
)

_EPOCH = date(1970, 1, 1)
_NO_ATTRIBUTES: Mapping[object, object] = MappingProxyType({})
# Dict lookups: Enum.__call__ costs a microsecond each on the verify hot path.
_ATTRIBUTES: Mapping[object, Attribute] = MappingProxyType({int(a): a for a in Attribute})
_PURPOSES: Mapping[object, Purpose] = MappingProxyType({int(p): p for p in Purpose})
# C0 and C1 controls, DEL, surrogates, bidi overrides and other format characters that
# could disguise a name on a verifier's screen.
_ID_NO_FORM = re.compile("[0-9]{17}[0-9X]")
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]"
)


def _check_attribute(attr: Attribute, value: object, *, full_id_rules: bool) -> object:
    """Validate one attribute value; returns it (dates as ``date``)."""
    if attr is Attribute.NAME or attr is Attribute.INSURED_REGION or attr is Attribute.ID_NO:
        if type(value) is not str or not value or len(value) > MAX_NAME:
            raise DecodeError("qr token", f"{attr.name} must be non-empty text")
        if _CONTROL.search(value):
            raise DecodeError("qr token", f"{attr.name} contains control characters")
        if attr is Attribute.ID_NO:
            _check_id_no(value, full_id_rules=full_id_rules)
        return value
    if attr is Attribute.PHOTO_REF:
        if type(value) is not bytes or not 1 <= len(value) <= 32:
            raise DecodeError("qr token", "PHOTO_REF must be 1-32 bytes")
        return value
    if attr is Attribute.CONCESSION_UNTIL:
        if not isinstance(value, date):
            raise DecodeError("qr token", "CONCESSION_UNTIL must be a date")
        return value
    if type(value) is not int or not 0 <= value <= 255:
        raise DecodeError("qr token", f"{attr.name} must be an integer 0-255")
    return value


def _check_id_no(value: str, *, full_id_rules: bool) -> None:
    """The ID number: every GB 11643 rule when a token is built, its form on verify.

    The issuer builds every token through the full rules, and its signature covers the
    result. Re-running the date and region rules on each verify would cost a verifier
    ~3 us of a ~60 us budget and answer nothing new (the birth-date bound also depends on
    the verifier's calendar); the form and the check character still catch an issuer that
    signed garbage. A verifier that needs the sex or birth date parses the number itself.
    """
    if full_id_rules:
        CitizenId.parse(value)
    elif _ID_NO_FORM.fullmatch(value) is None or gb11643_check_character(value[:17]) != value[17]:
        raise DecodeError("qr token", "ID_NO is not a GB 11643 number (form or check character)")


def _attr_to_cbor(attr: Attribute, value: object) -> object:
    if attr is Attribute.CONCESSION_UNTIL:
        assert isinstance(value, date)  # noqa: S101 - checked by _check_attribute
        return (value - _EPOCH).days
    return value


def _attr_from_cbor(attr: Attribute, value: object) -> object:
    if attr is Attribute.CONCESSION_UNTIL:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
            raise DecodeError("qr token", "CONCESSION_UNTIL must be a day number")
        return _EPOCH + timedelta(days=value)
    return value


@dataclass(frozen=True, kw_only=True)
class QrToken:
    """The contents of an e-card QR token, verified or about to be signed."""

    issuer: str
    purpose: Purpose
    ecard_ref: bytes
    jti: bytes
    issued_at: datetime
    expires_at: datetime
    status_shard: int
    status_idx: int
    attributes: Mapping[Attribute, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Tokens built in Python (the issuer's side) get every rule; verified tokens are
        # checked once on the way in by from_cbor_claims, which does not come through here.
        _check_scalars(self.issuer, self.ecard_ref, self.jti, self.status_shard, self.status_idx)
        if self.expires_at <= self.issued_at:
            raise DecodeError("qr token", "expires before it is issued")
        checked = _check_attributes(self.purpose, self.attributes.items(), full_id_rules=True)
        object.__setattr__(self, "attributes", MappingProxyType(checked))

    @property
    def jti_text(self) -> str:
        """The ``jti`` as text, the key for one-time use."""
        return b64url_encode(self.jti)

    def status_reference(self, status_base_uri: str) -> StatusReference:
        """The full status reference, given where this issuer publishes its shards."""
        return StatusReference(idx=self.status_idx, uri=f"{status_base_uri}/{self.status_shard}")

    def to_cbor_claims(self) -> dict[int, Any]:
        ssc: dict[int, Any] = {
            _SSC_PURPOSE: int(self.purpose),
            _SSC_ECARD: self.ecard_ref,
            _SSC_STATUS: [self.status_shard, self.status_idx],
        }
        if self.attributes:
            ssc[_SSC_ATTRS] = {int(a): _attr_to_cbor(a, v) for a, v in self.attributes.items()}
        return {
            CLAIM_ISS: self.issuer,
            CLAIM_EXP: int(self.expires_at.timestamp()),
            CLAIM_IAT: int(self.issued_at.timestamp()),
            CLAIM_CTI: self.jti,
            CLAIM_SSC: ssc,
        }

    def to_json(self, *, status_base_uri: str) -> dict[str, Any]:
        """The JSON view (schemas/qr-token.schema.json): what a verifier reports."""
        attrs: dict[str, Any] = {}
        for attr, value in self.attributes.items():
            key = attr.name.lower()
            if isinstance(value, bytes):
                attrs[key] = b64url_encode(value)
            elif isinstance(value, date):
                attrs[key] = value.isoformat()
            else:
                attrs[key] = value
        return {
            "iss": self.issuer,
            "purpose": self.purpose.name.lower(),
            "ecard": b64url_encode(self.ecard_ref),
            "jti": self.jti_text,
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
            "status": self.status_reference(status_base_uri).to_json(),
            "attributes": attrs,
        }

    @classmethod
    def from_cbor_claims(cls, claims: object) -> QrToken:
        """The token from verified CWT claims, each checked once (see :func:`_check_id_no`)."""
        # type() first: cbor2 gives dicts, and the ABC isinstance costs more than it checks.
        if type(claims) is not dict and not isinstance(claims, Mapping):
            raise DecodeError("qr token", "claims must be a CBOR map")
        if claims.keys() != _CLAIM_KEYS:
            missing = sorted(_CLAIM_KEYS - set(claims), key=repr)
            unknown = sorted(set(claims) - _CLAIM_KEYS, key=repr)
            raise VerificationError("claims", f"missing {missing}, unknown {unknown}")
        ssc = claims[CLAIM_SSC]
        if (type(ssc) is not dict and not isinstance(ssc, Mapping)) or not (
            ssc.keys() == _SSC_KEYS or ssc.keys() == _SSC_KEYS_NO_ATTRS
        ):
            raise VerificationError("claims", "private claim map is malformed")
        status = ssc[_SSC_STATUS]
        if (type(status) is not list and type(status) is not tuple) or len(status) != 2:
            raise VerificationError("claims", "status must be [shard, index]")
        raw_attrs = ssc.get(_SSC_ATTRS, _NO_ATTRIBUTES)
        if type(raw_attrs) is not dict and not isinstance(raw_attrs, Mapping):
            raise VerificationError("claims", "attributes must be a map")
        iat, exp = claims[CLAIM_IAT], claims[CLAIM_EXP]
        try:
            # Exact types throughout: bool is an int subclass, and True must not be 1.
            purpose = _PURPOSES.get(ssc[_SSC_PURPOSE]) if type(ssc[_SSC_PURPOSE]) is int else None
            if purpose is None:
                raise DecodeError("qr token", "purpose must be an integer 1-7")
            if type(iat) is not int or type(exp) is not int:
                raise DecodeError("qr token", "iat and exp must be integers")
            if exp <= iat:
                raise DecodeError("qr token", "expires before it is issued")
            fields = {
                "issuer": claims[CLAIM_ISS],
                "purpose": purpose,
                "ecard_ref": ssc[_SSC_ECARD],
                "jti": claims[CLAIM_CTI],
                "issued_at": datetime.fromtimestamp(iat, UTC),
                "expires_at": datetime.fromtimestamp(exp, UTC),
                "status_shard": status[0],
                "status_idx": status[1],
            }
            _check_scalars(fields["issuer"], fields["ecard_ref"], fields["jti"], *status)
            attrs = _check_attributes(purpose, raw_attrs.items(), full_id_rules=False)
        except CoreError as exc:
            raise VerificationError("claims", exc.detail) from None
        except (ValueError, OverflowError, OSError) as exc:
            raise VerificationError("claims", f"malformed claim: {exc}") from None
        # Assembled field by field, as the dataclass __init__ would, minus __post_init__:
        # everything was checked above.
        token = object.__new__(cls)
        for name, value in fields.items():
            object.__setattr__(token, name, value)
        object.__setattr__(token, "attributes", MappingProxyType(attrs))
        return token


def _check_scalars(issuer: object, ecard_ref: object, jti: object, shard: object,
                   idx: object) -> None:  # fmt: skip
    if type(issuer) is not str or not 0 < len(issuer) <= 64:
        raise DecodeError("qr token", "issuer must be 1-64 characters")
    if type(ecard_ref) is not bytes or len(ecard_ref) != ECARD_REF_BYTES:
        raise DecodeError("qr token", f"e-card reference must be {ECARD_REF_BYTES} bytes")
    if type(jti) is not bytes or len(jti) != JTI_BYTES:
        raise DecodeError("qr token", f"jti must be {JTI_BYTES} bytes")
    if type(shard) is not int or type(idx) is not int or not (0 <= shard < 2**32 > idx >= 0):
        raise DecodeError("qr token", "status shard and index must be integers 0..2^32-1")


def _check_attributes(
    purpose: Purpose, items: Iterable[tuple[object, object]], *, full_id_rules: bool
) -> dict[Attribute, object]:
    """Only the purpose's own attributes, each valid; CBOR day numbers become dates."""
    allowed = PURPOSE_ATTRIBUTES[purpose]
    checked: dict[Attribute, object] = {}
    for key, value in items:
        # Exact types: an Attribute, or a plain int from CBOR (never a bool).
        attr = _ATTRIBUTES.get(key) if type(key) is int or type(key) is Attribute else None
        if attr is None:
            raise DecodeError("qr token", f"unknown attribute {key!r}")
        if attr not in allowed:
            raise DecodeError("qr token", f"{purpose.name} tokens must not disclose {attr.name}")
        if not full_id_rules:
            value = _attr_from_cbor(attr, value)
        checked[attr] = _check_attribute(attr, value, full_id_rules=full_id_rules)
    return checked


def encode_qr_token(token: QrToken, signer: Signer) -> str:
    """Sign ``token`` with an ``ecard`` key and return the QR text.

    ``token`` validated itself when built (identity rules included).
    """
    payload = cose.encode_cbor(token.to_cbor_claims())
    message = cose.sign1(payload, signer, kid=short_kid(signer.kid))
    return SCHEME_PREFIX + b45encode(message)


def verify_qr_token(
    text: str,
    *,
    trust_list: TrustList,
    now: datetime,
    leeway: timedelta,
    purpose: Purpose | None = None,
) -> QrToken:
    """Verify QR text and return the token's contents.

    Checks, in order: size and scheme prefix, base45, COSE_Sign1 structure, the ``ecard``
    key named by its 8-byte kid in ``trust_list``, the signature (the key's algorithm), the
    claims, the validity window (``iat``/``exp`` with ``leeway``) and, if given, ``purpose``.
    One-time use of ``jti`` and the e-card's status are the caller's checks: they need
    state (a replay cache, a status list).
    """
    if not isinstance(text, str):
        raise DecodeError("qr token", "QR text must be a string")
    if len(text) > MAX_QR_TEXT:
        raise InputTooLargeError("qr token", len(text), MAX_QR_TEXT)
    if not text.startswith(SCHEME_PREFIX):
        raise DecodeError("qr token", f"not a {SCHEME_PREFIX} token")
    message = cose.decode_sign1(b45decode(text[len(SCHEME_PREFIX) :]))
    kid = message.kid
    if kid is None or cose.HEADER_KID not in message.protected:
        raise VerificationError("key-unknown", "kid must be in the protected header")
    trusted = trust_list.find_short(kid, KeyPurpose.ECARD, now=now)
    payload = cose.verify_sign1(message, trusted.key)
    claims = cose.decode_cbor(payload, what="CWT claims")
    token = QrToken.from_cbor_claims(claims)
    # Integers straight from the claims: the same checks as jws.check_times, without
    # building datetimes on the hot path.
    t, slack = now.timestamp(), leeway.total_seconds()
    iat, exp = claims[CLAIM_IAT], claims[CLAIM_EXP]  # type: ignore[index]
    if iat > t + slack:
        raise VerificationError("issued-in-future", f"iat {iat} is after now {int(t)}")
    if exp <= t - slack:
        raise VerificationError("expired", f"exp {exp} is not after now {int(t)}")
    if token.issued_at < trusted.not_before - leeway:
        raise VerificationError("key-window", "signed before its key was valid")
    if purpose is not None and token.purpose is not purpose:
        raise VerificationError(
            "purpose", f"token is for {token.purpose.name.lower()}, not {purpose.name.lower()}"
        )
    return token

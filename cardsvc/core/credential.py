"""The compact e-card credential: an issuer-signed CBOR credential small enough for a QR code.

The e-card credential handed out at activation (``ssc-ecard+jwt``) carries the device key
as a JWK and the status list URI: too large to travel inside a QR code. This form carries
the same binding in about 120-200 bytes, for device-bound offline presentation
(:mod:`cardsvc.core.devicebound`).

Wire form: an untagged COSE_Sign1 (ES256 or SM2SM3) by an ``ecard`` key, its 8-byte short
kid in the protected header, over a CBOR map::

    {1: purpose, 2: e-card reference (8 bytes), 3: [status shard, status index],
     4: {attribute: value, ...},                     # may be absent
     5: device public key (P-256, compressed SEC1 point, 33 bytes),
     6: exp (NumericDate)}

Keys 1 to 4 are exactly the private claim map of a QR token and are decoded by the QR
token's own rules (:class:`~cardsvc.core.qrtoken.QrToken`), so both forms disclose the
same attributes per purpose. A credential serves one purpose: a wallet holds one per
purpose, so a transport gate never receives the holder's name. It carries no ``iat``
(every byte counts in a QR code); its ``exp`` bounds its life, and the issuing key must
be in its trust-list window when it is verified.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cardsvc.core import cose
from cardsvc.core.errors import DecodeError, VerificationError
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_encode, short_kid
from cardsvc.core.qrtoken import CLAIM_SSC, Attribute, Purpose, QrToken
from cardsvc.core.signing import Signer
from cardsvc.core.trustlist import TrustList

__all__ = [
    "DEVICE_POINT_BYTES",
    "MAX_CREDENTIAL_SIZE",
    "CompactCredential",
    "compressed_point",
    "disclosed_claims",
    "encode_compact_credential",
    "verify_compact_credential",
]

#: A compressed P-256 point: 0x02 or 0x03, then x.
DEVICE_POINT_BYTES: Final = 33
#: Far above any real credential (a long name makes ~260 bytes); checked before decoding.
MAX_CREDENTIAL_SIZE: Final = 1024
_DEVICE, _EXP = 5, 6
_KEYS: Final = frozenset({1, 2, 3, 4, _DEVICE, _EXP})
_KEYS_NO_ATTRS: Final = frozenset({1, 2, 3, _DEVICE, _EXP})
_FORMAT = "compact credential"
# from_cbor_claims wants a jti and an issuer; neither is part of this form.
_NO_JTI: Final = bytes(8)
_CURVE: Final = ec.SECP256R1()


def disclosed_claims(attributes: Mapping[Attribute, object]) -> dict[str, object]:
    """Attributes as JSON values, keyed by lower-case name (schemas/qr-token.schema.json)."""
    claims: dict[str, object] = {}
    for attr, value in attributes.items():
        if isinstance(value, bytes):
            value = b64url_encode(value)
        elif isinstance(value, date):
            value = value.isoformat()
        claims[attr.name.lower()] = value
    return claims


def compressed_point(key: VerifyingKey) -> bytes:
    """The 33-byte compressed SEC1 form of a P-256 public key."""
    return key.p256.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def _device_public_key(point: object) -> ec.EllipticCurvePublicKey:
    if type(point) is not bytes or len(point) != DEVICE_POINT_BYTES or point[0] not in (2, 3):
        raise VerificationError("claims", "device key must be a 33-byte compressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
    except ValueError:
        raise VerificationError("claims", "device key is not a point on P-256") from None


@dataclass(frozen=True, kw_only=True)
class CompactCredential:
    """A device-bound e-card credential for one purpose, verified or about to be signed.

    ``device_point`` is the bound device key as a compressed P-256 point (see
    :func:`compressed_point`); ``attributes`` are checked by the QR token's rules (only
    the purpose's own, each value well formed) when the credential is built.
    """

    issuer: str
    purpose: Purpose
    ecard_ref: bytes
    status_shard: int
    status_idx: int
    device_point: bytes
    expires_at: datetime
    attributes: Mapping[Attribute, object] = field(default_factory=dict)
    device_public_key: ec.EllipticCurvePublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            public = _device_public_key(self.device_point)
        except VerificationError as exc:
            raise DecodeError(_FORMAT, exc.detail) from None
        object.__setattr__(self, "device_public_key", public)
        # The QR token is where attribute, reference and status rules live; building one
        # applies every rule without a second copy of them here.
        checked = self._as_token()
        object.__setattr__(self, "attributes", checked.attributes)

    @functools.cached_property
    def device_key(self) -> VerifyingKey:
        """The device key with its RFC 7638 thumbprint (the e-card's ``device_kid``)."""
        return VerifyingKey(public_key=self.device_public_key)

    def _as_token(self) -> QrToken:
        return QrToken(
            issuer=self.issuer,
            purpose=self.purpose,
            ecard_ref=self.ecard_ref,
            jti=_NO_JTI,
            issued_at=self.expires_at - timedelta(seconds=1),
            expires_at=self.expires_at,
            status_shard=self.status_shard,
            status_idx=self.status_idx,
            attributes=self.attributes,
        )

    def to_cbor(self) -> dict[int, Any]:
        """The credential's CBOR claims map (module docstring)."""
        claims: dict[int, Any] = dict(self._as_token().to_cbor_claims()[CLAIM_SSC])
        claims[_DEVICE] = self.device_point
        claims[_EXP] = int(self.expires_at.timestamp())
        return claims

    @classmethod
    def from_cbor(cls, claims: object, *, issuer: str) -> CompactCredential:
        """Parse a verified claims map; :class:`VerificationError` ``claims`` if malformed."""
        if not isinstance(claims, Mapping) or not (
            claims.keys() == _KEYS or claims.keys() == _KEYS_NO_ATTRS
        ):
            raise VerificationError("claims", "credential claims must be keys 1-6 (4 optional)")
        exp = claims[_EXP]
        if type(exp) is not int or not 0 < exp < 2**40:
            raise VerificationError("claims", "exp must be a positive integer")
        point = claims[_DEVICE]
        public = _device_public_key(point)
        ssc = {k: v for k, v in claims.items() if k not in (_DEVICE, _EXP)}
        token = QrToken.from_cbor_claims(
            {1: issuer, 4: exp, 6: exp - 1, 7: _NO_JTI, CLAIM_SSC: ssc}
        )
        # Every rule of __post_init__ has just run (the point decoded, the token built):
        # fill the fields directly rather than run them twice on the verify path.
        credential = object.__new__(cls)
        for name, value in (
            ("issuer", issuer),
            ("purpose", token.purpose),
            ("ecard_ref", token.ecard_ref),
            ("status_shard", token.status_shard),
            ("status_idx", token.status_idx),
            ("device_point", point),
            ("expires_at", token.expires_at),
            ("attributes", token.attributes),
            ("device_public_key", public),
        ):
            object.__setattr__(credential, name, value)
        return credential


def encode_compact_credential(credential: CompactCredential, signer: Signer) -> bytes:
    """Sign ``credential`` with an ``ecard`` key: the COSE_Sign1 bytes a wallet keeps."""
    payload = cose.encode_cbor(credential.to_cbor())
    return cose.sign1(payload, signer, kid=short_kid(signer.kid), tagged=False)


def verify_compact_credential(
    data: bytes, *, trust_list: TrustList, now: datetime, leeway: timedelta
) -> CompactCredential:
    """Verify a compact credential's issuer signature, claims and expiry.

    Checks, in order: size, COSE_Sign1 structure, the ``ecard`` key named by its short kid
    (``key-unknown``, ``key-purpose``, ``key-window``), the signature (the key's algorithm)
    (``signature``), the claims (``claims``) and ``exp`` with ``leeway`` (``expired``).
    Status is the caller's check (it needs a status list).
    """
    if not isinstance(data, bytes):
        raise DecodeError(_FORMAT, "credential must be bytes")
    message = cose.decode_sign1(data, max_size=MAX_CREDENTIAL_SIZE)
    kid = message.kid
    if kid is None or cose.HEADER_KID not in message.protected:
        raise VerificationError("key-unknown", "kid must be in the protected header")
    trusted = trust_list.find_short(kid, KeyPurpose.ECARD, now=now)
    payload = cose.verify_sign1(message, trusted.key)
    claims = cose.decode_cbor(payload, what="credential claims")
    credential = CompactCredential.from_cbor(claims, issuer=trust_list.issuer)
    if credential.expires_at <= now - leeway:
        raise VerificationError(
            "expired", f"credential expired at {credential.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        )
    return credential

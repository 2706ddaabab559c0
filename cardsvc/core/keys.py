"""Public keys as JWKs, their thumbprints, and the purposes a key may sign for.

The algorithm is a property of the key (``VerifyingKey.alg``), never of a message header:
verifiers pin it from here. Two suites: ES256 (ECDSA P-256 with SHA-256) and SM2SM3 (SM2
with SM3, :mod:`cardsvc.core.sm2`; JWK ``kty`` EC with ``crv`` SM2). A JWK's ``crv`` decides
its algorithm; an ``alg`` member, if any, must agree. The kid is the RFC 7638 thumbprint of
either, and since ``crv`` is hashed in, the same coordinates under the two curves never
share a kid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cardsvc.core import sm2
from cardsvc.core.errors import DecodeError, VerificationError
from cardsvc.core.sm2 import SM2SM3, Sm2PublicKey

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

ES256 = "ES256"
#: Every algorithm a key may have, each with the one JWK curve it goes with.
ALGORITHMS: dict[str, str] = {ES256: "P-256", SM2SM3: sm2.JWK_CURVE}
_P256_COORD = 32
PublicKey = ec.EllipticCurvePublicKey | Sm2PublicKey


class KeyPurpose(StrEnum):
    """What an issuing key may sign. A key signs for exactly one purpose."""

    ROOT = "root"  # signs trust lists, nothing else
    CARD_DOCUMENT = "card-document"
    ECARD = "ecard"  # e-card credentials and QR tokens
    STATUS_LIST = "status-list"
    TERMINAL_CERTIFICATE = "terminal-certificate"
    AUDIT_CHECKPOINT = "audit-checkpoint"
    ACCESS_TOKEN = "access-token"  # noqa: S105 - the issuer's own OAuth2 access tokens


ISSUING_PURPOSES: tuple[KeyPurpose, ...] = tuple(p for p in KeyPurpose if p is not KeyPurpose.ROOT)


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, what: str = "base64url") -> bytes:
    """Strict base64url without padding; raises :class:`DecodeError`."""
    if not isinstance(text, str) or not text.isascii() or "=" in text:
        raise DecodeError(what, "not unpadded base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise DecodeError(what, f"invalid base64url: {exc}") from None


def canonical_b64url_decode(text: str, *, format_name: str, what: str) -> bytes:
    """Decode unpadded base64url, refusing anything a strict encoder would not produce.

    Signed formats must have one encoding: no padding, nothing outside the alphabet (which
    :func:`base64.urlsafe_b64decode` would silently drop) and zero unused bits in the last
    character (else two texts decode to the same bytes).
    """
    if not isinstance(text, str) or not _B64URL_RE.fullmatch(text):
        raise DecodeError(format_name, f"{what} is not unpadded base64url")
    rest = len(text) % 4
    if rest == 1:
        raise DecodeError(format_name, f"{what} has an impossible base64url length")
    if rest and _B64URL_ALPHABET.index(text[-1]) & (0x0F if rest == 2 else 0x03):
        raise DecodeError(format_name, f"{what} is not canonical base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - prevalidated above
        raise DecodeError(format_name, f"{what} is not base64url: {exc}") from None


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The RFC 7517 JWK of a P-256 or SM2 public key (required members only)."""
    if isinstance(key, Sm2PublicKey):
        return {
            "kty": "EC",
            "crv": sm2.JWK_CURVE,
            "x": b64url_encode(key.x.to_bytes(sm2.COORD, "big")),
            "y": b64url_encode(key.y.to_bytes(sm2.COORD, "big")),
        }
    if not isinstance(key.curve, ec.SECP256R1):
        raise DecodeError("jwk", f"curve {key.curve.name} is not supported; use P-256")
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(_P256_COORD, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_P256_COORD, "big")),
    }


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the ``kid`` of every key we publish."""
    required = {name: jwk.get(name) for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def short_kid(kid: str) -> bytes:
    """The 8-byte form of a ``kid`` carried in QR tokens, where every byte costs."""
    return b64url_decode(kid, what="kid")[:8]


def _public_key_from_jwk(jwk: Mapping[str, object]) -> PublicKey:
    """Parse a P-256 or SM2 public JWK; raises :class:`DecodeError` naming what is wrong."""
    if not isinstance(jwk, Mapping):
        raise DecodeError("jwk", "not a JSON object")
    if jwk.get("kty") != "EC" or jwk.get("crv") not in ("P-256", sm2.JWK_CURVE):
        raise DecodeError("jwk", "only kty EC with crv P-256 or SM2 is accepted")
    if "d" in jwk:
        raise DecodeError("jwk", "a public JWK must not contain the private member d")
    coords = []
    for name in ("x", "y"):
        value = jwk.get(name)
        if not isinstance(value, str):
            raise DecodeError("jwk", f"member {name} missing or not a string")
        raw = b64url_decode(value, what="jwk")
        if len(raw) != _P256_COORD:
            raise DecodeError("jwk", f"member {name} must be {_P256_COORD} bytes, got {len(raw)}")
        if b64url_encode(raw) != value:
            # One key, one spelling: otherwise one key could carry several thumbprints.
            raise DecodeError("jwk", f"member {name} is not canonical base64url")
        coords.append(int.from_bytes(raw, "big"))
    if jwk["crv"] == sm2.JWK_CURVE:
        return Sm2PublicKey(coords[0], coords[1])
    try:
        return ec.EllipticCurvePublicNumbers(coords[0], coords[1], ec.SECP256R1()).public_key()
    except ValueError:
        raise DecodeError("jwk", "point is not on the P-256 curve") from None


@dataclass(frozen=True, kw_only=True)
class VerifyingKey:
    """A public key with the one algorithm it verifies and its thumbprint ``kid``.

    ``alg`` defaults to the key's own (ES256 for P-256, SM2SM3 for SM2); naming another
    is refused, so a key never verifies under the other suite.
    """

    public_key: PublicKey
    alg: str = ""
    kid: str = field(default="")

    def __post_init__(self) -> None:
        own = SM2SM3 if isinstance(self.public_key, Sm2PublicKey) else ES256
        if not self.alg:
            object.__setattr__(self, "alg", own)
        elif self.alg not in ALGORITHMS:
            raise DecodeError("key", f"algorithm {self.alg} is not supported")
        elif self.alg != own:
            raise DecodeError("key", f"{self.alg} needs a {ALGORITHMS[self.alg]} key")
        if own == ES256 and not (
            isinstance(self.public_key, ec.EllipticCurvePublicKey)
            and isinstance(self.public_key.curve, ec.SECP256R1)
        ):
            raise DecodeError("key", "ES256 needs a P-256 key")
        if not self.kid:
            object.__setattr__(self, "kid", jwk_thumbprint(public_jwk(self.public_key)))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, object]) -> VerifyingKey:
        """Build from a public JWK; an ``alg`` member, if any, must agree with the key."""
        public_key = _public_key_from_jwk(jwk)
        own = SM2SM3 if isinstance(public_key, Sm2PublicKey) else ES256
        alg = jwk.get("alg", own)
        if alg != own:
            raise DecodeError(
                "jwk", f"alg {alg!r} does not match a {ALGORITHMS[own]} key ({own})"
            )
        # The members were checked canonical, so the thumbprint of the given JWK is the
        # key's; computing it from them skips re-encoding the point.
        return cls(public_key=public_key, alg=own, kid=jwk_thumbprint(jwk))

    @property
    def p256(self) -> ec.EllipticCurvePublicKey:
        """The P-256 key of an ES256 key; ``VerificationError('algorithm')`` for SM2."""
        if isinstance(self.public_key, Sm2PublicKey):
            raise VerificationError("algorithm", f"an {self.alg} key, where ES256 is required")
        return self.public_key

    def point(self) -> bytes:
        """The uncompressed point 04 || x || y (65 bytes), whichever the curve."""
        if isinstance(self.public_key, Sm2PublicKey):
            return self.public_key.point()
        return self.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def jwk(self) -> dict[str, str]:
        """The public JWK with ``kid`` and ``alg``."""
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": self.alg}

    def verify_raw(self, signature: bytes, data: bytes) -> None:
        """Verify a raw r||s signature with the key's algorithm.

        Raises ``VerificationError('signature')`` (or, for an SM2 key without the
        ``cardsvc[sm]`` extra, :class:`~cardsvc.core.sm2.AlgorithmUnavailableError`).
        """
        if isinstance(self.public_key, Sm2PublicKey):
            self.public_key.verify(signature, data)
            return
        if len(signature) != 2 * _P256_COORD:
            raise VerificationError(
                "signature", f"ES256 signature must be 64 bytes, got {len(signature)}"
            )
        r = int.from_bytes(signature[:_P256_COORD], "big")
        s = int.from_bytes(signature[_P256_COORD:], "big")
        try:
            self.public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise VerificationError("signature", "signature does not verify") from None

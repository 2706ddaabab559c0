"""The SM2-with-SM3 suite (GM/T 0003, GB/T 32918; SM3: GM/T 0004, GB/T 32905).

Beside ES256, keys may be SM2 keys on the SM2 recommended 256-bit curve. A signature is
SM2 over SM3(Z || M), where Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) binds
the fixed signer ID :data:`SIGNER_ID` (the standard's default, ``1234567812345678``) and
the public key; it is sent as raw r || s (64 bytes), like ES256. Names on the wire:

* JOSE ``alg`` :data:`SM2SM3` (``"SM2SM3"``: the signature and its hash, as ES256 names
  both; no JOSE value is registered for SM2);
* COSE ``alg`` :data:`COSE_ALG_SM2SM3` (-66037: the private-use range starts below
  -65536, and 501 is the OID arc of SM2-with-SM3, 1.2.156.10197.1.501);
* JWK ``{"kty": "EC", "crv": "SM2", "x": ..., "y": ...}`` (32-byte coordinates).

Parsing an SM2 key needs only the arithmetic here (the point is checked on the curve, whose
cofactor is 1). Verifying and signing need the optional extra ``cardsvc[sm]``
(:data:`EXTRA`, the ``tongsuopy`` library): without it ``cardsvc.core`` still imports and
verifies ES256, and every SM2 verification raises :class:`AlgorithmUnavailableError`
naming the extra. Low-S does not apply: an SM2 signature has no (r, n - s) twin (the
verifier uses t = r + s), so each signed object has one encoding anyway.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cardsvc.core.errors import DecodeError, VerificationError

__all__ = [
    "COSE_ALG_SM2SM3",
    "EXTRA",
    "SIGNER_ID",
    "SM2SM3",
    "AlgorithmUnavailableError",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "available",
    "sm3",
    "z_value",
]

SM2SM3: Final = "SM2SM3"
COSE_ALG_SM2SM3: Final = -66037
#: The signer ID hashed into Z: GM/T 0009's default, fixed for every key of ours.
SIGNER_ID: Final = b"1234567812345678"
EXTRA: Final = "cardsvc[sm]"
JWK_CURVE: Final = "SM2"

# The SM2 recommended curve (GM/T 0003.5 / GB/T 32918.5): y^2 = x^3 + ax + b over F_p.
P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
COORD: Final = 32
SIGNATURE_BYTES: Final = 64


class AlgorithmUnavailableError(VerificationError):
    """An SM2 key was met but the SM2 library (the ``cardsvc[sm]`` extra) is missing."""

    code = "algorithm-unavailable"

    def __init__(self, alg: str = SM2SM3, extra: str = EXTRA) -> None:
        super().__init__(
            "algorithm-unavailable",
            f"{alg} keys need the optional extra {extra}: pip install '{extra}'",
        )
        self.alg = alg
        self.extra = extra


@functools.cache
def _library() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType] | None:
    try:
        ec = importlib.import_module("tongsuopy.crypto.asymciphers.ec")
        hashes = importlib.import_module("tongsuopy.crypto.hashes")
        serialization = importlib.import_module("tongsuopy.crypto.serialization")
        exceptions = importlib.import_module("tongsuopy.crypto.exceptions")
    except ImportError:
        return None
    return ec, hashes, serialization, exceptions


def _require() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    lib = _library()
    if lib is None:
        raise AlgorithmUnavailableError()
    return lib


def available() -> bool:
    """Whether the SM2 library is installed (``pip install 'cardsvc[sm]'``)."""
    return _library() is not None


def sm3(data: bytes) -> bytes:
    """SM3 of ``data`` (GB/T 32905); raises :class:`AlgorithmUnavailableError`."""
    _ec, hashes, _ser, _exc = _require()
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return bytes(digest.finalize())


def z_value(x: int, y: int, signer_id: bytes = SIGNER_ID) -> bytes:
    """Z of GM/T 0003.2 section 5.5 for the public key (x, y) and ``signer_id``."""
    entl = (8 * len(signer_id)).to_bytes(2, "big")
    parts = (A, B, GX, GY, x, y)
    return sm3(entl + signer_id + b"".join(v.to_bytes(COORD, "big") for v in parts))


def on_curve(x: int, y: int) -> bool:
    """Whether (x, y) is a point of the SM2 curve (cofactor 1: so of its group too)."""
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _raw(der: bytes) -> bytes:
    # DER from our own library: SEQUENCE { INTEGER r, INTEGER s }, short lengths (< 128).
    values = []
    offset = 2
    for _ in range(2):
        length = der[offset + 1]
        values.append(int.from_bytes(der[offset + 2 : offset + 2 + length], "big"))
        offset += 2 + length
    return values[0].to_bytes(COORD, "big") + values[1].to_bytes(COORD, "big")


@dataclass(frozen=True)
class Sm2PublicKey:
    """A point of the SM2 curve; built without the SM2 library, verifying needs it."""

    x: int
    y: int
    _loaded: list[Any] = field(
        default_factory=list, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not on_curve(self.x, self.y):
            raise DecodeError("key", "point is not on the SM2 curve")

    @classmethod
    def from_point(cls, point: bytes) -> Sm2PublicKey:
        """From the uncompressed encoding 04 || x || y (65 bytes)."""
        if len(point) != 1 + 2 * COORD or point[0] != 4:
            raise DecodeError("key", "an SM2 point is 65 bytes, 04 || x || y")
        return cls(int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big"))

    @property
    def curve_name(self) -> str:
        return JWK_CURVE

    def point(self) -> bytes:
        """The uncompressed encoding 04 || x || y."""
        return b"\x04" + self.x.to_bytes(COORD, "big") + self.y.to_bytes(COORD, "big")

    def compressed(self) -> bytes:
        """The compressed encoding (02 or 03) || x."""
        return bytes((2 + (self.y & 1),)) + self.x.to_bytes(COORD, "big")

    def _key(self) -> Any:
        if not self._loaded:
            ec, _h, _s, _e = _require()
            loaded = ec.EllipticCurvePublicKey.from_encoded_point(ec.SM2(), self.point())
            self._loaded.append(loaded)
        return self._loaded[0]

    def verify(self, signature: bytes, data: bytes) -> None:
        """Verify a raw r || s SM2-with-SM3 signature over ``data`` (Z with :data:`SIGNER_ID`).

        Raises ``VerificationError('signature')``, or :class:`AlgorithmUnavailableError`.
        """
        ec, hashes, _ser, exceptions = _require()
        if len(signature) != SIGNATURE_BYTES:
            raise VerificationError(
                "signature", f"SM2 signature must be 64 bytes, got {len(signature)}"
            )
        r = int.from_bytes(signature[:COORD], "big")
        s = int.from_bytes(signature[COORD:], "big")
        if not (0 < r < N and 0 < s < N):
            raise VerificationError("signature", "SM2 r and s must be in [1, n-1]")
        try:
            self._key().verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SM3()))
        except exceptions.InvalidSignature:
            raise VerificationError("signature", "SM2 signature does not verify") from None


@dataclass(frozen=True)
class Sm2PrivateKey:
    """An SM2 private key in the SM2 library (file key store, emulator, tests)."""

    _key: Any = field(repr=False)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        ec, _h, _s, _e = _require()
        return cls(ec.generate_private_key(ec.SM2()))

    @classmethod
    def from_scalar(cls, d: int) -> Sm2PrivateKey:
        ec, _h, _s, _e = _require()
        if not 0 < d < N - 1:
            raise ValueError("an SM2 private scalar is in [1, n-2]")
        return cls(ec.derive_private_key(d, ec.SM2()))

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes) -> Sm2PrivateKey:
        """Load encrypted PKCS#8; ``ValueError`` on a wrong passphrase or not an SM2 key."""
        ec, _h, serialization, _e = _require()
        key = serialization.load_pem_private_key(data, password=passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != JWK_CURVE:
            raise ValueError("not an SM2 private key")
        return cls(key)

    def to_pem(self, passphrase: bytes) -> bytes:
        """Encrypted PKCS#8 (PBES2; the library encrypts with SM4-CBC)."""
        _ec, _h, serialization, _e = _require()
        pem: bytes = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        return pem

    @property
    def scalar(self) -> int:
        value: int = self._key.private_numbers().private_value
        return value

    def public_key(self) -> Sm2PublicKey:
        numbers = self._key.public_key().public_numbers()
        return Sm2PublicKey(numbers.x, numbers.y)

    def sign(self, data: bytes) -> bytes:
        """Raw r || s of SM2-with-SM3 over ``data`` (Z with :data:`SIGNER_ID`)."""
        ec, hashes, _s, _e = _require()
        return _raw(bytes(self._key.sign(data, ec.ECDSA(hashes.SM3()))))

"""Signers: the one interface every encoder signs through.

Encoders take a :class:`Signer`, not a private key, so a PKCS#11 HSM key (which never
leaves the device) and a file key are used the same way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from cardsvc.core.keys import ES256, VerifyingKey, b64url_encode
from cardsvc.core.sm2 import SM2SM3, Sm2PrivateKey

#: The order n of the P-256 group.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_ORDER = P256_ORDER // 2


def is_high_s(signature: bytes, alg: str = ES256) -> bool:
    """Whether a raw 64-byte ES256 r||s signature has s above n/2 (its other form).

    Always false for SM2SM3: an SM2 signature (r, s) has no twin (r, n - s) (the verifier
    computes t = r + s mod n, so flipping s changes the point), so low-S does not apply.
    """
    if alg != ES256:
        return False
    return len(signature) == 64 and int.from_bytes(signature[32:]) > _HALF_ORDER


def low_s(signature: bytes, alg: str = ES256) -> bytes:
    """The low-S form of a raw ES256 r||s signature: s replaced by n - s when above n/2.

    (r, s) and (r, n - s) both verify under ECDSA; our verifiers take only the low one, so
    that each signed object has one encoding. Every encoder passes its signer's output
    through here with the signer's ``alg``, since an HSM or a phone's secure element
    returns whichever s its ECDSA drew. SM2 signatures are returned unchanged.
    """
    if not is_high_s(signature, alg):
        return signature
    return signature[:32] + (P256_ORDER - int.from_bytes(signature[32:])).to_bytes(32)


class Signer(Protocol):
    """Signs with one key for one algorithm; ``sign`` returns the raw r||s form."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...

    def verifying_key(self) -> VerifyingKey: ...


@dataclass(frozen=True)
class LocalSigner:
    """A signer over an in-memory P-256 private key (file key store, tests)."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    alg: str = ES256

    def __post_init__(self) -> None:
        if not isinstance(self.private_key.curve, ec.SECP256R1):
            raise ValueError(f"ES256 needs a P-256 key, not {self.private_key.curve.name}")

    @functools.cached_property
    def kid(self) -> str:
        # The RFC 7638 thumbprint costs ~14 us, and minting asks for it with every token.
        return self.verifying_key().kid

    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(public_key=self.private_key.public_key())

    def sign(self, data: bytes) -> bytes:
        der = self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return low_s(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass(frozen=True)
class Sm2Signer:
    """A signer over an in-memory SM2 private key (SM2SM3; file key store, tests)."""

    private_key: Sm2PrivateKey = field(repr=False)
    alg: str = SM2SM3

    def __post_init__(self) -> None:
        if self.alg != SM2SM3:
            raise ValueError(f"an SM2 key signs SM2SM3, not {self.alg}")

    @functools.cached_property
    def kid(self) -> str:
        return self.verifying_key().kid

    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(public_key=self.private_key.public_key(), alg=SM2SM3)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def _b64_json(obj: Mapping[str, object]) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def sign_jws(header: Mapping[str, object], payload: Mapping[str, object], signer: Signer) -> str:
    """A compact JWS (RFC 7515). ``alg`` and ``kid`` come from the signer, not the caller."""
    protected = {**header, "alg": signer.alg, "kid": signer.kid}
    signing_input = f"{_b64_json(protected)}.{_b64_json(payload)}"
    signature = low_s(signer.sign(signing_input.encode("ascii")), signer.alg)
    return f"{signing_input}.{b64url_encode(signature)}"

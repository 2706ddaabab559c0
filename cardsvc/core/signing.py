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
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _b64_json(obj: Mapping[str, object]) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def sign_jws(header: Mapping[str, object], payload: Mapping[str, object], signer: Signer) -> str:
    """A compact JWS (RFC 7515). ``alg`` and ``kid`` come from the signer, not the caller."""
    protected = {**header, "alg": signer.alg, "kid": signer.kid}
    signing_input = f"{_b64_json(protected)}.{_b64_json(payload)}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"

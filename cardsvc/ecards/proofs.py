"""Server nonces, sealed counter challenges and DPoP-style device proofs (RFC 9449 shape).

A device proof is a compact JWS, ``typ`` ``dpop+jwt``, ES256, signed by the bound device
key over ``{htm, htu, iat, nonce, jti}``. The key that verifies it is the one bound to the
e-card, never one named by the proof; a ``jwk`` header, if present, must be that key.
The one exception is finding the e-card bound to a key (:func:`proof_key`): the key the
proof names picks the e-card, and the proof must then verify with the key bound to it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.jws import strict_json_object
from cardsvc.core.keys import VerifyingKey, b64url_decode, b64url_encode, jwk_thumbprint
from cardsvc.ecards.errors import DeviceProofError
from cardsvc.replay import ReplayCache

PROOF_TYP = "dpop+jwt"
MAX_PROOF = 4096
_MAC = 16


class Sealer:
    """MACs small server-made values (nonces, challenges) so no table has to hold them."""

    def __init__(self, secret: bytes | Callable[[], bytes]) -> None:
        # A callable is asked once, at first use (the database's shared secret: the
        # sealer is built before a fresh database is migrated).
        self._secret = secret if isinstance(secret, bytes) else None
        self._source = secret if not isinstance(secret, bytes) else None

    def _key(self) -> bytes:
        if self._secret is None:
            assert self._source is not None  # noqa: S101 - one of the two is set
            self._secret = self._source()
        return self._secret

    def _mac(self, label: bytes, body: bytes) -> bytes:
        return hmac.new(self._key(), label + b"\x00" + body, hashlib.sha256).digest()[:_MAC]

    def seal(self, label: bytes, body: bytes, *, now: datetime) -> str:
        stamped = int(now.timestamp()).to_bytes(8, "big") + body
        return b64url_encode(stamped + self._mac(label, stamped))

    def open(self, label: bytes, text: object, *, now: datetime, max_age: timedelta) -> bytes:
        """The sealed body; ``ValueError`` naming why if forged, malformed or too old."""
        if not isinstance(text, str) or not 16 <= len(text) <= 256:
            raise ValueError("malformed")
        try:
            raw = b64url_decode(text)
        except CoreError:
            raise ValueError("malformed") from None
        if len(raw) < 8 + _MAC:
            raise ValueError("malformed")
        stamped, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(label, stamped)):
            raise ValueError("not issued by this server")
        age = now.timestamp() - int.from_bytes(stamped[:8], "big")
        if not -5 <= age <= max_age.total_seconds():
            raise ValueError("expired")
        return stamped[8:]


def verify_device_proof(
    proof: object,
    *,
    key: VerifyingKey,
    htm: str,
    htu: str,
    now: datetime,
    max_age: timedelta,
    sealer: Sealer,
    replay: ReplayCache,
) -> Mapping[str, Any]:
    """Check a device proof against the bound ``key``; returns its claims.

    Reasons: ``proof-missing``, ``proof-malformed``, ``proof-typ``, ``proof-key``,
    ``proof-signature``, ``proof-method``, ``proof-url``, ``proof-stale``,
    ``proof-nonce``, ``proof-replayed``.
    """
    if not isinstance(proof, str) or not proof:
        raise DeviceProofError("proof-missing", "a DPoP header with a device proof is required")
    if len(proof) > MAX_PROOF or not proof.isascii() or proof.count(".") != 2:
        raise DeviceProofError("proof-malformed", "the device proof is not a compact JWS")
    head, body, sig = proof.split(".")
    try:
        header = strict_json_object(b64url_decode(head), what="proof header")
        claims = strict_json_object(b64url_decode(body), what="proof claims")
        signature = b64url_decode(sig)
    except CoreError as exc:
        raise DeviceProofError("proof-malformed", exc.detail) from None
    if header.get("typ") != PROOF_TYP or header.get("alg") != key.alg:
        raise DeviceProofError("proof-typ", f"the proof must be typ {PROOF_TYP}, alg {key.alg}")
    if "jwk" in header:
        jwk = header["jwk"]
        try:
            same = isinstance(jwk, dict) and jwk_thumbprint(jwk) == key.kid
        except CoreError:
            same = False
        if not same:
            raise DeviceProofError("proof-key", "the proof names a key other than the bound one")
    try:
        key.verify_raw(signature, f"{head}.{body}".encode("ascii"))
    except VerificationError:
        raise DeviceProofError(
            "proof-signature", "the proof is not signed by the device key bound to this e-card"
        ) from None
    if claims.get("htm") != htm:
        raise DeviceProofError("proof-method", f"htm must be {htm}")
    if claims.get("htu") != htu:
        raise DeviceProofError("proof-url", f"htu must be {htu}")
    iat = claims.get("iat")
    if type(iat) is not int:
        raise DeviceProofError("proof-malformed", "iat must be an integer")
    age = now.timestamp() - iat
    if not -5 <= age <= max_age.total_seconds():
        raise DeviceProofError("proof-stale", f"iat is {int(age)} s from the server's clock")
    try:
        sealer.open(b"nonce", claims.get("nonce"), now=now, max_age=max_age)
    except ValueError as exc:
        raise DeviceProofError("proof-nonce", f"server nonce: {exc}; get a fresh one") from None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 64:
        raise DeviceProofError("proof-malformed", "jti must be 8-64 characters")
    ttl = int(max_age.total_seconds()) + 10
    if not replay.first_use(f"dpop:{key.kid}:{jti}", ttl_seconds=ttl):
        raise DeviceProofError("proof-replayed", "this proof was already used")
    return claims


def proof_key(proof: object) -> VerifyingKey:
    """The public key a device proof names in its ``jwk`` header (not yet verified);
    raises :class:`DeviceProofError` (``proof-missing``, ``proof-malformed``,
    ``proof-key``)."""
    if not isinstance(proof, str) or not proof:
        raise DeviceProofError("proof-missing", "a DPoP header with a device proof is required")
    if len(proof) > MAX_PROOF or not proof.isascii() or proof.count(".") != 2:
        raise DeviceProofError("proof-malformed", "the device proof is not a compact JWS")
    try:
        header = strict_json_object(b64url_decode(proof.split(".")[0]), what="proof header")
    except CoreError as exc:
        raise DeviceProofError("proof-malformed", exc.detail) from None
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or "d" in jwk:
        raise DeviceProofError("proof-key", "the proof must name its public key (jwk)")
    try:
        return VerifyingKey.from_jwk(jwk)
    except CoreError as exc:
        raise DeviceProofError("proof-key", f"the proof's key: {exc.detail}") from None


def new_nonce(sealer: Sealer, *, now: datetime) -> str:
    return sealer.seal(b"nonce", secrets.token_bytes(8), now=now)

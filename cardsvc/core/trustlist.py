"""The trust list: the root-signed list of issuing keys, each bound to one purpose.

A verifier pins the root public key and accepts an issuing key only if the current trust
list lists it for the purpose at hand and the current time falls in the key's window.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cardsvc.core.errors import DecodeError, VerificationError
from cardsvc.core.jws import check_times, verify_jws
from cardsvc.core.keys import ALGORITHMS, KeyPurpose, VerifyingKey, short_kid
from cardsvc.core.signing import Signer, sign_jws

TRUST_LIST_TYP = "trustlist+jwt"
#: A trust list lists a few dozen keys; anything this large is not one.
MAX_TRUST_LIST_SIZE = 256 * 1024


def _ts(value: datetime) -> int:
    return int(value.timestamp())


def _dt(value: object, what: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError("trust list", f"{what} must be an integer NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise DecodeError("trust list", f"{what} is out of range") from None


@dataclass(frozen=True, kw_only=True)
class TrustedKey:
    """An issuing key, the one purpose it signs for and its validity window."""

    key: VerifyingKey
    purpose: KeyPurpose
    not_before: datetime
    not_after: datetime

    def to_json(self) -> dict[str, object]:
        return {
            **self.key.jwk(),
            "purpose": self.purpose.value,
            "nbf": _ts(self.not_before),
            "exp": _ts(self.not_after),
        }

    @classmethod
    def from_json(cls, obj: object) -> TrustedKey:
        if not isinstance(obj, Mapping):
            raise DecodeError("trust list", "each key must be a JSON object")
        if obj.get("alg") not in ALGORITHMS:
            # The list pins each key's algorithm: an entry must say it (and the JWK agree).
            raise DecodeError("trust list", f"each key must name its alg ({', '.join(ALGORITHMS)})")
        key = VerifyingKey.from_jwk(obj)
        if obj.get("kid") != key.kid:
            raise DecodeError("trust list", f"kid {obj.get('kid')!r} is not the key's thumbprint")
        try:
            purpose = KeyPurpose(str(obj.get("purpose")))
        except ValueError:
            raise DecodeError("trust list", f"unknown key purpose {obj.get('purpose')!r}") from None
        if purpose is KeyPurpose.ROOT:
            raise DecodeError("trust list", "the root key is pinned, never listed")
        not_before = _dt(obj.get("nbf"), "nbf")
        not_after = _dt(obj.get("exp"), "exp")
        if not_after <= not_before:
            raise DecodeError("trust list", f"key {key.kid}: exp is not after nbf")
        return cls(key=key, purpose=purpose, not_before=not_before, not_after=not_after)


@dataclass(frozen=True, kw_only=True)
class TrustList:
    """A verified (or about to be signed) trust list."""

    issuer: str
    sequence: int
    issued_at: datetime
    expires_at: datetime
    keys: tuple[TrustedKey, ...]
    _by_kid: dict[str, TrustedKey] = field(init=False, repr=False, compare=False)
    _by_short_kid: dict[bytes, TrustedKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kid = {k.key.kid: k for k in self.keys}
        if len(by_kid) != len(self.keys):
            raise DecodeError("trust list", "a key is listed twice")
        by_short = {short_kid(kid): k for kid, k in by_kid.items()}
        if len(by_short) != len(by_kid):
            raise DecodeError("trust list", "two keys share a short kid")
        object.__setattr__(self, "_by_kid", by_kid)
        object.__setattr__(self, "_by_short_kid", by_short)

    def find(self, kid: str, purpose: KeyPurpose, *, now: datetime) -> TrustedKey:
        """The listed key ``kid`` if it signs for ``purpose`` and ``now`` is in its window."""
        trusted = self._by_kid.get(kid) if isinstance(kid, str) else None
        return self._check(trusted, repr(kid), purpose, now)

    def find_short(self, kid8: bytes, purpose: KeyPurpose, *, now: datetime) -> TrustedKey:
        """As :meth:`find`, by the 8-byte short kid that QR tokens carry."""
        return self._check(self._by_short_kid.get(kid8), kid8.hex(), purpose, now)

    @staticmethod
    def _check(
        trusted: TrustedKey | None, name: str, purpose: KeyPurpose, now: datetime
    ) -> TrustedKey:
        if trusted is None:
            raise VerificationError("key-unknown", f"key {name} is not in the trust list")
        if trusted.purpose is not purpose:
            raise VerificationError(
                "key-purpose", f"key {name} signs {trusted.purpose.value}, not {purpose.value}"
            )
        if not trusted.not_before <= now <= trusted.not_after:
            raise VerificationError(
                "key-window",
                f"key {name} is valid from {trusted.not_before:%Y-%m-%dT%H:%M:%SZ} "
                f"to {trusted.not_after:%Y-%m-%dT%H:%M:%SZ}",
            )
        return trusted

    def to_claims(self) -> dict[str, object]:
        return {
            "iss": self.issuer,
            "seq": self.sequence,
            "iat": _ts(self.issued_at),
            "exp": _ts(self.expires_at),
            "keys": [k.to_json() for k in self.keys],
        }

    def sign(self, root: Signer) -> str:
        """Encode as a compact JWS signed by the root key."""
        return sign_jws({"typ": TRUST_LIST_TYP}, self.to_claims(), root)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> TrustList:
        seq = claims.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise DecodeError("trust list", "seq must be a non-negative integer")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise DecodeError("trust list", "iss must be a non-empty string")
        keys = claims.get("keys")
        if not isinstance(keys, list):
            raise DecodeError("trust list", "keys must be a list")
        return cls(
            issuer=issuer,
            sequence=seq,
            issued_at=_dt(claims.get("iat"), "iat"),
            expires_at=_dt(claims.get("exp"), "exp"),
            keys=tuple(TrustedKey.from_json(k) for k in keys),
        )

    @classmethod
    def verify(
        cls, token: str, *, root: VerifyingKey, now: datetime, leeway: timedelta
    ) -> TrustList:
        """Verify a trust list JWS against the pinned root key and the clock."""

        def root_only(header: Mapping[str, Any]) -> VerifyingKey:
            if header.get("kid") != root.kid:
                raise VerificationError("key-unknown", "not signed by the pinned root key")
            return root

        verified = verify_jws(
            token, typ=TRUST_LIST_TYP, key_for=root_only, max_size=MAX_TRUST_LIST_SIZE
        )
        check_times(verified.claims, now=now, leeway=leeway)
        return cls.from_claims(verified.claims)


class TrustAnchor:
    """A pinned root key and the newest trust list accepted under it.

    Refuses rollback: a trust list with a lower sequence number than one already
    accepted, or the same number with other content, is an attack or a stale mirror.
    """

    def __init__(self, root: VerifyingKey, *, accepted_sequence: int = -1) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._accepted_sequence = accepted_sequence
        self._current: TrustList | None = None

    @property
    def current(self) -> TrustList | None:
        return self._current

    @property
    def accepted_sequence(self) -> int:
        return self._accepted_sequence

    def accept(self, token: str, *, now: datetime, leeway: timedelta) -> TrustList:
        trust_list = TrustList.verify(token, root=self.root, now=now, leeway=leeway)
        with self._lock:
            seq = trust_list.sequence
            if seq < self._accepted_sequence:
                raise VerificationError(
                    "rollback",
                    f"sequence {seq} is older than the accepted {self._accepted_sequence}",
                )
            if (
                seq == self._accepted_sequence
                and self._current is not None
                and trust_list != self._current
            ):
                raise VerificationError("rollback", f"sequence {seq} reused with other content")
            self._accepted_sequence = seq
            self._current = trust_list
            return trust_list

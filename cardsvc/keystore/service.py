"""Key rules: which key signs now, rotation, and what the trust list publishes.

Rotation invariants (DESIGN.md):
- a new key is published at least one cache TTL before it signs, so every verifier that
  refreshes on schedule knows it before the first token it signs arrives;
- a retired key stays in the trust list for the longest lifetime of what it signed plus
  one cache TTL after its last signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardsvc.core.keys import ES256, ISSUING_PURPOSES, KeyPurpose, VerifyingKey
from cardsvc.core.signing import Signer
from cardsvc.core.trustlist import TrustedKey, TrustList
from cardsvc.errors import (
    ConfigurationError,
    KeyStoreError,
    NoActiveKeyError,
    RotationPendingError,
)
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.records import KeyRecord

_DAY = timedelta(days=1)

#: ``(kind, subject, data, now)`` of a committed key change.
KeyEventHook = Callable[[str, str, dict[str, object], datetime], None]


def _default_lifetimes() -> dict[KeyPurpose, timedelta]:
    return {
        # A card document lives as long as the card (up to 20 years, some cards longer).
        KeyPurpose.CARD_DOCUMENT: 25 * 366 * _DAY,
        # QR tokens live a minute; offline batches cover hours.
        KeyPurpose.ECARD: _DAY,
        KeyPurpose.STATUS_LIST: 7 * _DAY,
        KeyPurpose.TERMINAL_CERTIFICATE: 6 * 366 * _DAY,
        # Audit checkpoints must stay checkable for as long as records are kept.
        KeyPurpose.AUDIT_CHECKPOINT: 50 * 366 * _DAY,
        KeyPurpose.ACCESS_TOKEN: _DAY,
    }


@dataclass(frozen=True, kw_only=True)
class KeyPolicy:
    """Timing rules; ``max_lifetime`` is the longest life of anything a key signs."""

    cache_ttl: timedelta = timedelta(minutes=5)
    trust_list_lifetime: timedelta = 7 * _DAY
    max_lifetime: dict[KeyPurpose, timedelta] = field(default_factory=_default_lifetimes)
    #: The algorithm new keys of each purpose get (ES256 where not named; SM2SM3 the other).
    algorithms: dict[KeyPurpose, str] = field(default_factory=dict)

    def lifetime(self, purpose: KeyPurpose) -> timedelta:
        return self.max_lifetime[purpose]

    def algorithm(self, purpose: KeyPurpose) -> str:
        return self.algorithms.get(purpose, ES256)


@dataclass(frozen=True, kw_only=True)
class RotationResult:
    new: KeyRecord
    retired: tuple[KeyRecord, ...]


class KeyService:
    """The key store's rules over a :class:`KeyBackend`."""

    def __init__(self, backend: KeyBackend, policy: KeyPolicy, *, issuer: str) -> None:
        self.backend = backend
        self.policy = policy
        self.issuer = issuer
        #: Called as ``on_event(kind, subject, data, now)`` after each committed key change
        #: (the issuer wires it to the audit log).
        self.on_event: KeyEventHook | None = None

    def _event(self, kind: str, subject: str, data: dict[str, object], now: datetime) -> None:
        if self.on_event is not None:
            self.on_event(kind, subject, data, now)

    def init(self, *, now: datetime) -> list[KeyRecord]:
        """Create the root key and one key per issuing purpose, where missing.

        Idempotent: a second run creates nothing. Returns the keys it created. First keys
        sign at once: no verifier has cached anything yet. An issuing purpose whose newest
        key has another algorithm than the policy names is rotated (the new key signs one
        cache TTL later, as every rotation); the root key is never replaced here.
        """
        records = self.backend.records() if self.backend.exists() else []
        have = {r.purpose for r in records}
        created = []
        for purpose in (KeyPurpose.ROOT, *ISSUING_PURPOSES):
            if purpose in have:
                continue
            key = self._generate(purpose)
            created.append(
                KeyRecord(kid=key.kid, purpose=purpose, key=key, created_at=now, activates_at=now)
            )
        if created or not self.backend.exists():
            self.backend.commit(
                records + created, trust_list_sequence=self.backend.trust_list_sequence()
            )
        for record in created:
            self._event("key.created", f"key:{record.kid}", {"purpose": record.purpose.value}, now)
        for purpose in ISSUING_PURPOSES:
            newest = max(
                (r for r in self.backend.records() if r.purpose is purpose),
                key=lambda r: r.activates_at,
            )
            if newest.key.alg != self.policy.algorithm(purpose):
                created.append(self.rotate(purpose, now=now).new)
        return created

    def _generate(self, purpose: KeyPurpose) -> VerifyingKey:
        alg = self.policy.algorithm(purpose)
        if alg == ES256:  # the call every backend knows
            return self.backend.generate(purpose)
        return self.backend.generate(purpose, alg=alg)

    def records(self) -> list[KeyRecord]:
        return self.backend.records()

    def rotate(self, purpose: KeyPurpose, *, now: datetime) -> RotationResult:
        """Publish a new key for ``purpose`` that starts signing one cache TTL from now."""
        if purpose is KeyPurpose.ROOT:
            raise KeyStoreError(
                "the root key is pinned by every verifier: replacing it is a re-pinning "
                "ceremony, not a rotation"
            )
        records = self.backend.records()
        pending = [r for r in records if r.purpose is purpose and r.activates_at > now]
        if pending:
            raise RotationPendingError(purpose.value, pending[0].activates_at)
        activates_at = now + self.policy.cache_ttl
        verify_until = activates_at + self.policy.lifetime(purpose) + self.policy.cache_ttl
        retired = tuple(
            r.retired(retires_at=activates_at, verify_until=verify_until)
            for r in records
            if r.purpose is purpose and r.retires_at is None
        )
        key = self._generate(purpose)
        new = KeyRecord(
            kid=key.kid, purpose=purpose, key=key, created_at=now, activates_at=activates_at
        )
        by_kid = {r.kid: r for r in retired}
        updated = [by_kid.get(r.kid, r) for r in records] + [new]
        self.backend.commit(updated, trust_list_sequence=self.backend.trust_list_sequence())
        self._event(
            "key.rotated",
            f"key:{new.kid}",
            {
                "purpose": purpose.value,
                "activates_at": new.activates_at,
                "retired": [r.kid for r in retired],
            },
            now,
        )
        return RotationResult(new=new, retired=retired)

    def signing_record(self, purpose: KeyPurpose, *, now: datetime) -> KeyRecord:
        candidates = [r for r in self.backend.records() if r.purpose is purpose and r.may_sign(now)]
        if not candidates:
            raise NoActiveKeyError(purpose.value, now)
        return max(candidates, key=lambda r: r.activates_at)

    def signer(self, purpose: KeyPurpose, *, now: datetime) -> Signer:
        """The signer that may sign for ``purpose`` at ``now``."""
        return self.backend.signer(self.signing_record(purpose, now=now).kid)

    def root_key(self) -> VerifyingKey:
        roots = [r for r in self.backend.records() if r.purpose is KeyPurpose.ROOT]
        if len(roots) != 1:
            raise ConfigurationError(f"key store must hold exactly one root key, has {len(roots)}")
        return roots[0].key

    def trusted_keys(self, *, now: datetime) -> tuple[TrustedKey, ...]:
        """Every issuing key a verifier must know at ``now``: pending, current, retired."""
        out = []
        for r in self.backend.records():
            if r.purpose is KeyPurpose.ROOT or not r.verifiable(now):
                continue
            if r.verify_until is not None:
                not_after = r.verify_until
            else:
                # Current key: verifiable for the life of what it may sign before the next
                # trust list replaces this one.
                not_after = (
                    now
                    + self.policy.trust_list_lifetime
                    + self.policy.lifetime(r.purpose)
                    + self.policy.cache_ttl
                )
            out.append(
                TrustedKey(
                    key=r.key, purpose=r.purpose, not_before=r.activates_at, not_after=not_after
                )
            )
        return tuple(out)

    def issue_trust_list(self, *, now: datetime) -> str:
        """Sign a new trust list with the next sequence number and record that number."""
        records = self.backend.records()
        sequence = self.backend.trust_list_sequence() + 1
        trust_list = TrustList(
            issuer=self.issuer,
            sequence=sequence,
            issued_at=now,
            expires_at=now + self.policy.trust_list_lifetime,
            keys=self.trusted_keys(now=now),
        )
        root = self.backend.signer(self.root_key().kid)
        token = trust_list.sign(root)
        self.backend.commit(records, trust_list_sequence=sequence)
        self._event(
            "key.trust_list",
            f"trust-list:{sequence}",
            {"sequence": sequence, "sha256": hashlib.sha256(token.encode()).hexdigest()},
            now,
        )
        return token

    def jwks(self, *, now: datetime) -> dict[str, list[dict[str, object]]]:
        """The JWK Set of ``/.well-known/jwks.json``: every key a verifier may need."""
        return {"keys": [{**k.to_json(), "use": "sig"} for k in self.trusted_keys(now=now)]}

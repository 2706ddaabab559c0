"""Key rules: which key signs now, rotation, and what the trust list publishes.

Rotation invariants (DESIGN.md):
- a new key is published at least one cache TTL before it signs, so every verifier that
  refreshes on schedule knows it before the first token it signs arrives;
- a retired key stays in the trust list for the longest lifetime of what it signed plus
  one cache TTL after its last signature.

Offline-root mode (``offline_root``): the root private key is not here. Trust lists are
prepared here (:meth:`KeyService.prepare_trust_list`), signed on the offline side and
installed with :meth:`KeyService.import_trust_list`; a key signs only once a trust list
that lists it has been installed for one cache TTL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardsvc.core.errors import CoreError
from cardsvc.core.keys import ES256, ISSUING_PURPOSES, KeyPurpose, VerifyingKey
from cardsvc.core.signing import Signer
from cardsvc.core.trustlist import TrustedKey, TrustList
from cardsvc.errors import (
    ConfigurationError,
    KeyStoreError,
    NoActiveKeyError,
    OfflineRootError,
    RotationPendingError,
    TrustListRefusedError,
)
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.offline import OfflineRoot, read_trust_list_unchecked_times
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

    def __init__(
        self,
        backend: KeyBackend,
        policy: KeyPolicy,
        *,
        issuer: str,
        offline_root: OfflineRoot | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.issuer = issuer
        #: Set in offline-root mode: the pinned root and the installed trust list.
        self.offline_root = offline_root
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

        Offline-root mode creates nothing: the keys come from the key ceremony.
        """
        if self.offline_root is not None:
            if not self.backend.exists():
                raise OfflineRootError(
                    f"offline root: {self.backend!r} holds no keys; they are made by "
                    "`cardsvc ceremony run`, not by `keys init`"
                )
            return []
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
        return self.backend.generate(purpose, alg=self.policy.algorithm(purpose))

    def records(self) -> list[KeyRecord]:
        return self.backend.records()

    def rotate(self, purpose: KeyPurpose, *, now: datetime) -> RotationResult:
        """Publish a new key for ``purpose`` that starts signing one cache TTL from now."""
        if purpose is KeyPurpose.ROOT:
            raise KeyStoreError(
                "the root key is pinned by every verifier: replacing it is a re-pinning "
                "ceremony, not a rotation"
            )
        if self.offline_root is not None:
            raise OfflineRootError(
                "offline root: a new key must be in a root-signed trust list before it "
                f"signs; run `cardsvc keys prepare-trust-list --rotate {purpose.value}`"
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
        if self.offline_root is not None:
            # Only a key the installed, root-signed trust list publishes may sign.
            installed = self.offline_root.require_installed().trust_list
            listed = {k.key.kid for k in installed.keys}
            candidates = [r for r in candidates if r.kid in listed]
        if not candidates:
            raise NoActiveKeyError(purpose.value, now)
        return max(candidates, key=lambda r: r.activates_at)

    def signer(self, purpose: KeyPurpose, *, now: datetime) -> Signer:
        """The signer that may sign for ``purpose`` at ``now``."""
        return self.backend.signer(self.signing_record(purpose, now=now).kid)

    def root_key(self) -> VerifyingKey:
        if self.offline_root is not None:
            return self.offline_root.root()
        roots = [r for r in self.backend.records() if r.purpose is KeyPurpose.ROOT]
        if len(roots) != 1:
            raise ConfigurationError(f"key store must hold exactly one root key, has {len(roots)}")
        return roots[0].key

    def check_ready(self) -> None:
        """Refuse to start without what signing needs (the root, or the installed list)."""
        self.root_key()
        if self.offline_root is not None:
            self.offline_root.require_installed()

    def trusted_keys(self, *, now: datetime) -> tuple[TrustedKey, ...]:
        """Every issuing key a verifier must know at ``now``: pending, current, retired.

        Offline-root mode: the keys of the installed trust list (what the root signed).
        """
        if self.offline_root is not None:
            installed = self.offline_root.require_installed().trust_list
            return tuple(k for k in installed.keys if now <= k.not_after)
        return self._trusted_from_records(self.backend.records(), now=now)

    def _trusted_from_records(
        self, records: Sequence[KeyRecord], *, now: datetime
    ) -> tuple[TrustedKey, ...]:
        out = []
        for r in records:
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

    def unsigned_trust_list(
        self, *, now: datetime, sequence: int, records: Sequence[KeyRecord] | None = None
    ) -> TrustList:
        """The trust list of ``records`` (the store's by default), ready for the root."""
        return TrustList(
            issuer=self.issuer,
            sequence=sequence,
            issued_at=now,
            expires_at=now + self.policy.trust_list_lifetime,
            keys=self._trusted_from_records(
                self.backend.records() if records is None else records, now=now
            ),
        )

    def issue_trust_list(self, *, now: datetime) -> str:
        """Sign a new trust list with the next sequence number and record that number."""
        if self.offline_root is not None:
            raise OfflineRootError(
                "offline root: this issuer cannot sign a trust list; run "
                "`cardsvc keys prepare-trust-list`, sign it offline with "
                "`cardsvc ceremony sign-trust-list` and install it with "
                "`cardsvc keys import-trust-list`"
            )
        records = self.backend.records()
        sequence = self.backend.trust_list_sequence() + 1
        trust_list = self.unsigned_trust_list(now=now, sequence=sequence, records=records)
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

    # -- offline root -----------------------------------------------------------------

    def _require_offline(self) -> OfflineRoot:
        if self.offline_root is None:
            raise ConfigurationError(
                "the root key is online here (CARDSVC_OFFLINE_ROOT is not set): "
                "`cardsvc keys export-trust-list` signs the trust list directly"
            )
        return self.offline_root

    def _published_kids(self) -> set[str]:
        installed = self._require_offline().installed()
        return set() if installed is None else {k.key.kid for k in installed.trust_list.keys}

    def prepare_trust_list(
        self, *, now: datetime, rotate: Sequence[KeyPurpose] = ()
    ) -> TrustList:
        """The next trust list, unsigned, for the offline root; with a new key per ``rotate``.

        A new key is staged: it signs nothing until a trust list listing it is installed
        (:meth:`import_trust_list`), and then only one cache TTL later.
        """
        offline = self._require_offline()
        # The ceremony's list first: until one is installed nothing is published, and
        # "staged" (listed nowhere yet) would mean every key.
        offline.require_installed()
        if len(set(rotate)) != len(rotate):
            raise KeyStoreError("each purpose can be rotated once per trust list")
        records = self.backend.records()
        published = self._published_kids()
        for purpose in rotate:
            if purpose is KeyPurpose.ROOT:
                raise KeyStoreError(
                    "the root key is pinned by every verifier: replacing it is a re-pinning "
                    "ceremony, not a rotation"
                )
            staged = [
                r
                for r in records
                if r.purpose is purpose and r.kid not in published and r.retires_at is None
            ]
            if staged:
                raise RotationPendingError(purpose.value, staged[0].activates_at)
        created = []
        for purpose in rotate:
            key = self._generate(purpose)
            created.append(
                KeyRecord(
                    kid=key.kid,
                    purpose=purpose,
                    key=key,
                    created_at=now,
                    activates_at=now + self.policy.cache_ttl,
                )
            )
        if created:
            self.backend.commit(
                records + created, trust_list_sequence=self.backend.trust_list_sequence()
            )
        for record in created:
            self._event(
                "key.created",
                f"key:{record.kid}",
                {"purpose": record.purpose.value, "staged": True},
                now,
            )
        installed = offline.installed()
        last = -1 if installed is None else installed.trust_list.sequence
        sequence = max(last, self.backend.trust_list_sequence()) + 1
        return self.unsigned_trust_list(now=now, sequence=sequence, records=records + created)

    def import_trust_list(self, token: str, *, now: datetime, leeway: timedelta) -> TrustList:
        """Install a trust list the offline root signed, after checking it.

        Refused: another root's signature or a tampered token, an expired list, another
        issuer, a sequence number not above the installed one (a replay or an old list),
        a key this store does not hold, or a published key left out while still in use.
        Keys it publishes for the first time sign one cache TTL from now at the earliest;
        the key each replaces retires then.
        """
        offline = self._require_offline()
        root = offline.root()
        try:
            TrustList.verify(token, root=root, now=now, leeway=leeway)
            trust_list = read_trust_list_unchecked_times(token, root)
        except CoreError as exc:
            check = getattr(exc, "check", exc.code)
            raise TrustListRefusedError(str(check), str(exc)) from None
        if trust_list.issuer != self.issuer:
            raise TrustListRefusedError(
                "issuer", f"it is for {trust_list.issuer!r}, this issuer is {self.issuer!r}"
            )
        installed = offline.installed()
        last = -1 if installed is None else installed.trust_list.sequence
        if trust_list.sequence <= last:
            raise TrustListRefusedError(
                "sequence",
                f"sequence {trust_list.sequence} is not above the installed {last} "
                "(a replay or an older list)",
            )
        records = self.backend.records()
        by_kid = {r.kid: r for r in records}
        for listed in trust_list.keys:
            record = by_kid.get(listed.key.kid)
            if record is None or record.purpose is not listed.purpose:
                raise TrustListRefusedError(
                    "keys",
                    f"it lists a {listed.purpose.value} key {listed.key.kid} this issuer "
                    "does not hold",
                )
        listed_kids = {k.key.kid for k in trust_list.keys}
        published = set() if installed is None else {k.key.kid for k in installed.trust_list.keys}
        dropped = [
            r.kid
            for r in records
            if r.kid in published and r.verifiable(now) and r.kid not in listed_kids
        ]
        if dropped:
            raise TrustListRefusedError(
                "keys", f"it leaves out keys verifiers still need: {', '.join(dropped)}"
            )
        # Newly published keys: one cache TTL of publication before the first signature
        # (the first trust list ever: nothing is cached anywhere, they sign as scheduled).
        updated = dict(by_kid)
        rotations: list[tuple[KeyRecord, list[str]]] = []
        for listed in trust_list.keys:
            if installed is None or listed.key.kid in published:
                continue
            record = by_kid[listed.key.kid]
            activates_at = max(record.activates_at, listed.not_before, now + self.policy.cache_ttl)
            new = KeyRecord(
                kid=record.kid,
                purpose=record.purpose,
                key=record.key,
                created_at=record.created_at,
                activates_at=activates_at,
            )
            updated[new.kid] = new
            verify_until = activates_at + self.policy.lifetime(new.purpose) + self.policy.cache_ttl
            retired = []
            for old in records:
                if (
                    old.purpose is new.purpose
                    and old.kid != new.kid
                    and old.kid in published
                    and old.retires_at is None
                ):
                    updated[old.kid] = old.retired(
                        retires_at=activates_at, verify_until=verify_until
                    )
                    retired.append(old.kid)
            rotations.append((new, retired))
        # Schedules first, then the list: a crash between leaves new keys unlisted (they
        # cannot sign) and the same import can be run again.
        self.backend.commit(
            [updated[r.kid] for r in records], trust_list_sequence=trust_list.sequence
        )
        offline.install(token)
        if installed is None:
            # The ceremony made these keys offline: the log learns of them here.
            for listed in trust_list.keys:
                self._event(
                    "key.created",
                    f"key:{listed.key.kid}",
                    {"purpose": listed.purpose.value, "ceremony": True},
                    now,
                )
        for new, retired in rotations:
            self._event(
                "key.rotated",
                f"key:{new.kid}",
                {
                    "purpose": new.purpose.value,
                    "activates_at": new.activates_at,
                    "retired": retired,
                },
                now,
            )
        self._event(
            "key.trust_list",
            f"trust-list:{trust_list.sequence}",
            {
                "sequence": trust_list.sequence,
                "sha256": hashlib.sha256(token.encode()).hexdigest(),
                "imported": True,
            },
            now,
        )
        return trust_list

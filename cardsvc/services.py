"""The issuer's domain services, wired from settings (one object per app or CLI run)."""

from __future__ import annotations

import fcntl
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from cardsvc.audit.pending import FILE_NAME as PENDING_FILE
from cardsvc.audit.pending import PendingKeyEvents
from cardsvc.audit.service import AuditLog
from cardsvc.auth.clients import ClientService
from cardsvc.auth.tokens import VerifiedTokenCache
from cardsvc.bundles import BundleService
from cardsvc.core.errors import CoreError
from cardsvc.core.files import write_atomically
from cardsvc.core.trustlist import TrustList
from cardsvc.db.engine import make_engine
from cardsvc.ecards.activation import ActivationService
from cardsvc.ecards.policy import ECardPolicy
from cardsvc.ecards.proofs import Sealer
from cardsvc.ecards.tokens import TokenService
from cardsvc.ecards.verifier import OnlineVerifier
from cardsvc.ecards.views import ECardDirectory
from cardsvc.errors import ConfigurationError
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.offline import OfflineRoot
from cardsvc.keystore.open import open_backend
from cardsvc.keystore.service import KeyService
from cardsvc.keystore.stacked import StackedBackend
from cardsvc.ledger.service import LedgerService, stop_after_death
from cardsvc.multiprocess import shared_nonce_secret
from cardsvc.ops.metrics import LiveFigures, Metrics
from cardsvc.publication import Publication as Publication
from cardsvc.publication import etag_of as etag_of
from cardsvc.ratelimit import RateLimiter, make_rate_limiter
from cardsvc.redisstore import RedisStore, make_redis_store
from cardsvc.registry.cards import CardPolicy, CardService
from cardsvc.registry.persons import PersonService
from cardsvc.registry.status import StatusLists
from cardsvc.replay import ReplayCache, make_replay_cache
from cardsvc.settings import Settings
from cardsvc.transactions.batch import BatchService
from cardsvc.transactions.idempotency import IdempotencyStore
from cardsvc.transactions.service import TransactionService

#: The trust list this issuer's processes serve, beside the key store (see
#: :class:`TrustListPublisher`).
SHARED_TRUST_LIST = "trust-list-published.jws"


def utcnow() -> datetime:
    return datetime.now(UTC)


def key_backend(settings: Settings) -> KeyBackend:
    """The key store the settings name; stacked on the previous one while moving."""
    backend = open_backend(settings.key_store())
    if settings.previous_key_dir is not None:
        if settings.key_backend == "file" and (
            settings.previous_key_dir.resolve() == settings.key_dir.resolve()
        ):
            raise ConfigurationError("CARDSVC_PREVIOUS_KEY_DIR is CARDSVC_KEY_DIR itself")
        previous = FileKeyBackend(settings.previous_key_dir, settings.passphrase())
        backend = StackedBackend(backend, previous)
    return backend


class TrustListPublisher:
    """Keeps the current signed trust list; re-signs when keys change or it ages.

    Re-signing on every request would burn sequence numbers and defeat caches.
    """

    def __init__(self, keys: KeyService, *, shared_file: Path | None = None) -> None:
        self._keys = keys
        #: Where the processes of one issuer keep the trust list one of them signed
        #: (beside the key store), so all serve the same one and sequences never go
        #: back from one worker to the next (verifiers refuse an older sequence).
        self._shared = shared_file
        self._lock = threading.Lock()
        self._current: Publication | None = None
        self._fingerprint: tuple[tuple[str, str, datetime], ...] = ()

    def current(self, *, now: datetime) -> Publication:
        offline = self._keys.offline_root
        if offline is not None:
            # Offline root: serve what was signed offline and installed, nothing else.
            installed = offline.require_installed()
            with self._lock:
                current = self._current
                if current is None or current.body != installed.token:
                    current = Publication(
                        body=installed.token,
                        etag=etag_of(installed.token),
                        signed_at=installed.trust_list.issued_at,
                    )
                    self._current = current
                return current
        fingerprint = tuple(
            (k.key.kid, k.purpose.value, k.not_before) for k in self._keys.trusted_keys(now=now)
        )
        refresh_after = self._keys.policy.trust_list_lifetime / 2
        with self._lock:
            current = self._current
            if (
                current is None
                or fingerprint != self._fingerprint
                or now - current.signed_at >= refresh_after
            ):
                token, signed_at = self._sign_or_adopt(refresh_after, now=now)
                current = Publication(body=token, etag=etag_of(token), signed_at=signed_at)
                self._current = current
                self._fingerprint = fingerprint
            return current

    def _sign_or_adopt(self, refresh_after: timedelta, *, now: datetime) -> tuple[str, datetime]:
        """A new signed trust list, or the one another process of this issuer signed for
        the same keys less than ``refresh_after`` ago (one signer at a time: a file lock)."""
        if self._shared is None:
            return self._keys.issue_trust_list(now=now), now
        self._shared.parent.mkdir(parents=True, exist_ok=True)
        with self._shared.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                token = self._shared.read_text()
                held = TrustList.verify(
                    token, root=self._keys.root_key(), now=now, leeway=timedelta(0)
                )
            except (OSError, UnicodeError, CoreError):
                held = None
            if held is not None and now - held.issued_at < refresh_after:
                # As signed (times in whole seconds), not as held in memory.
                wanted = [k.to_json() for k in self._keys.trusted_keys(now=now)]
                if [k.to_json() for k in held.keys] == wanted:
                    return token, held.issued_at
            token = self._keys.issue_trust_list(now=now)
            write_atomically(self._shared, token.encode())
            return token, now

    def jwks_json(self, *, now: datetime) -> str:
        return json.dumps(self._keys.jwks(now=now), separators=(",", ":"))


@dataclass(kw_only=True)
class Services:
    settings: Settings
    engine: Engine
    keys: KeyService
    #: The clock every request reads; tests replace it to move time forward.
    clock: Callable[[], datetime] = utcnow
    #: Access tokens already verified (bearer checks cost no ECDSA verify on a hit).
    token_cache: VerifiedTokenCache = field(default_factory=VerifiedTokenCache)
    #: Prometheus metrics of this app (``GET /metrics``).
    metrics: Metrics = field(default_factory=Metrics)
    #: The Redis server of replay memory and rate limits, when configured.
    redis: RedisStore | None = field(init=False, default=None)
    trust_list: TrustListPublisher = field(init=False)
    status: StatusLists = field(init=False)
    bundles: BundleService = field(init=False)
    persons: PersonService = field(init=False)
    cards: CardService = field(init=False)
    replay: ReplayCache = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    clients: ClientService = field(init=False)
    ecards: ECardDirectory = field(init=False)
    ecard_activation: ActivationService = field(init=False)
    ecard_tokens: TokenService = field(init=False)
    verifier: OnlineVerifier = field(init=False)
    ledger: LedgerService = field(init=False)
    transactions: TransactionService = field(init=False)
    transaction_batches: BatchService = field(init=False)
    idempotency: IdempotencyStore = field(init=False)
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.trust_list = TrustListPublisher(
            self.keys, shared_file=settings.key_dir / SHARED_TRUST_LIST
        )
        self.status = StatusLists(
            self.engine,
            self.keys,
            issuer=settings.issuer,
            shard_size=settings.status_shard_size,
            max_fill=settings.status_shard_max_fill,
            ttl_seconds=settings.cache_ttl_seconds,
            lifetime=timedelta(hours=settings.status_list_lifetime_hours),
        )
        self.bundles = BundleService(
            self.engine,
            self.keys,
            self.status,
            self.trust_list,
            issuer=settings.issuer,
            lifetime=timedelta(hours=settings.status_list_lifetime_hours),
        )
        self.persons = PersonService(self.engine, self.status, on_death=stop_after_death)
        self.cards = CardService(
            self.engine,
            self.keys,
            self.status,
            CardPolicy(
                validity_years=settings.card_validity_years,
                lapse_after=timedelta(days=settings.temporary_loss_lapse_days),
                sweep_interval_seconds=settings.status_sync_interval_seconds,
            ),
            issuer=settings.issuer,
        )
        # One Redis (or cluster) for both: on one server the verify path counts and
        # records a jti in one script.
        redis = self.redis = make_redis_store(settings.redis_url, settings.redis_cluster_nodes)
        self.replay = make_replay_cache(redis, prefix=settings.redis_prefix)
        self.rate_limiter = make_rate_limiter(redis, prefix=settings.redis_prefix)
        self.clients = ClientService(
            self.engine, self.keys, self.replay, issuer=settings.issuer, leeway=self.leeway
        )
        self.ledger = LedgerService(self.engine)
        self.transactions = TransactionService(
            self.engine, self.keys, issuer=settings.issuer, leeway=self.leeway
        )
        self.transaction_batches = BatchService(self.engine, self.transactions)
        self.idempotency = IdempotencyStore(self.engine)
        self.audit = AuditLog(
            self.engine,
            self.keys,
            issuer=settings.issuer,
            pending=PendingKeyEvents(settings.key_dir / PENDING_FILE),
        )
        self.keys.on_event = self._key_event
        nonce_secret = settings.ecard_nonce_secret
        # One sealer for both: nonces and chip challenges are sealed under different labels.
        # Unset: one random secret in the database, shared by every process (and kept
        # across restarts), so a nonce issued by one worker is accepted by another.
        engine = self.engine
        sealer = Sealer(
            nonce_secret.get_secret_value().encode()
            if nonce_secret is not None
            else lambda: shared_nonce_secret(engine)
        )
        policy = ECardPolicy(
            token_lifetime=timedelta(seconds=settings.ecard_token_lifetime_seconds),
            offline_period=timedelta(hours=settings.ecard_offline_hours),
            code_lifetime=timedelta(minutes=settings.ecard_activation_code_minutes),
            code_attempts=settings.ecard_activation_attempts,
            proof_max_age=timedelta(seconds=settings.ecard_proof_max_age_seconds),
        )
        self.ecards = ECardDirectory(self.engine, self.status)
        self.ecard_activation = ActivationService(
            self.engine,
            self.keys,
            self.status,
            self.ecards,
            self.replay,
            policy,
            sealer=sealer,
            issuer=settings.issuer,
        )
        self.ecard_tokens = TokenService(
            self.keys, self.ecards, self.replay, policy, sealer=sealer, issuer=settings.issuer
        )
        self.verifier = OnlineVerifier(
            self.keys,
            self.ecards,
            self.status,
            self.trust_list,
            self.replay,
            self.rate_limiter,
            issuer=settings.issuer,
            status_base_uri=settings.issuer.rstrip("/") + "/v1/status-lists",
            status_sync_interval=settings.status_sync_interval_seconds,
            verify_per_client=settings.rate_limits.verify_per_client,
        )
        self.metrics.watch_pool(self.engine)
        self.metrics.add_live(
            LiveFigures(
                self.engine, self.keys, clock=lambda: self.clock(),
                status_published=self.status.published_at,
            )
        )  # fmt: skip

    def use_stores(self, *, replay: ReplayCache, rate_limiter: RateLimiter) -> None:
        """Put the e-card paths (online verify, activation, device proofs) and every rate
        limit on these stores: tests give each its own Redis prefix (or clock)."""
        self.replay = replay
        self.rate_limiter = rate_limiter
        self.ecard_activation.replay = replay
        self.ecard_tokens.replay = replay
        self.verifier.replay = replay
        self.verifier.rate_limiter = rate_limiter

    def _key_event(self, kind: str, subject: str, data: dict[str, object], now: datetime) -> None:
        self.audit.record_key_event(kind, subject=subject, data=data, now=now)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        keys = KeyService(
            key_backend(settings),
            settings.key_policy(),
            issuer=settings.issuer,
            offline_root=OfflineRoot(*settings.offline_root_files())
            if settings.offline_root
            else None,
        )
        return cls(settings=settings, engine=make_engine(settings.database_url), keys=keys)

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self.settings.leeway_seconds)

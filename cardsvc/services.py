"""The issuer's domain services, wired from settings (one object per app or CLI run)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from cardsvc.auth.clients import ClientService
from cardsvc.db.engine import make_engine
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.service import KeyService
from cardsvc.publication import Publication as Publication
from cardsvc.publication import etag_of as etag_of
from cardsvc.registry.cards import CardPolicy, CardService
from cardsvc.registry.persons import PersonService
from cardsvc.registry.status import StatusLists
from cardsvc.replay import ReplayCache, make_replay_cache
from cardsvc.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


class TrustListPublisher:
    """Keeps the current signed trust list; re-signs when keys change or it ages.

    Re-signing on every request would burn sequence numbers and defeat caches.
    """

    def __init__(self, keys: KeyService) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self._current: Publication | None = None
        self._fingerprint: tuple[tuple[str, str, datetime], ...] = ()

    def current(self, *, now: datetime) -> Publication:
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
                token = self._keys.issue_trust_list(now=now)
                current = Publication(body=token, etag=etag_of(token), signed_at=now)
                self._current = current
                self._fingerprint = fingerprint
            return current

    def jwks_json(self, *, now: datetime) -> str:
        return json.dumps(self._keys.jwks(now=now), separators=(",", ":"))


@dataclass(kw_only=True)
class Services:
    settings: Settings
    engine: Engine
    keys: KeyService
    #: The clock every request reads; tests replace it to move time forward.
    clock: Callable[[], datetime] = utcnow
    trust_list: TrustListPublisher = field(init=False)
    status: StatusLists = field(init=False)
    persons: PersonService = field(init=False)
    cards: CardService = field(init=False)
    replay: ReplayCache = field(init=False)
    clients: ClientService = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.trust_list = TrustListPublisher(self.keys)
        self.status = StatusLists(
            self.engine,
            self.keys,
            issuer=settings.issuer,
            shard_size=settings.status_shard_size,
            max_fill=settings.status_shard_max_fill,
            ttl_seconds=settings.cache_ttl_seconds,
            lifetime=timedelta(hours=settings.status_list_lifetime_hours),
        )
        self.persons = PersonService(self.engine, self.status)
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
        self.replay = make_replay_cache(settings.redis_url)
        self.clients = ClientService(
            self.engine, self.keys, self.replay, issuer=settings.issuer, leeway=self.leeway
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        backend = FileKeyBackend(settings.key_dir, settings.passphrase())
        keys = KeyService(backend, settings.key_policy(), issuer=settings.issuer)
        return cls(settings=settings, engine=make_engine(settings.database_url), keys=keys)

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self.settings.leeway_seconds)

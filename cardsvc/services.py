"""The issuer's domain services, wired from settings (one object per app or CLI run)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from cardsvc.db.engine import make_engine
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.service import KeyService
from cardsvc.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


def etag_of(body: str) -> str:
    """A strong ETag: the body's SHA-256, shortened (collisions only cost a cache miss)."""
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True, kw_only=True)
class Publication:
    """A signed document as served: body, ETag and when it was signed."""

    body: str
    etag: str
    signed_at: datetime


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
    trust_list: TrustListPublisher = field(init=False)

    def __post_init__(self) -> None:
        self.trust_list = TrustListPublisher(self.keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        backend = FileKeyBackend(settings.key_dir, settings.passphrase())
        keys = KeyService(backend, settings.key_policy(), issuer=settings.issuer)
        return cls(settings=settings, engine=make_engine(settings.database_url), keys=keys)

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self.settings.leeway_seconds)

"""Verifier bundles as served: versioned in the database, full or delta, cached.

A version is minted when the published content changes (a shard's statuses, the trust
list's keys) or when the newest version is a quarter of the status list lifetime old, so
a bundle's signed time (``iat``, the issuer's clock) stays fresh. Versions live in the
``verifier_bundles`` table, so they grow across restarts and across processes (a lost
insert race re-reads the winner). Content is compared by hash of the status list bytes,
not of the signed token, so processes that sign the same lists agree on the version.

A delta ``since`` N holds the shards whose content changed since version N; an unknown
N (or one not older than the current version) gets a full bundle, which a verifier
accepts in place of a delta. The newer bundle's signature vouches for the shards a delta
carries over, so only the bundle's own ``exp`` matters for their freshness.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import BigInteger, Engine, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.keys import KeyPurpose, b64url_decode
from cardsvc.db.models import Base, UtcDateTime
from cardsvc.keystore.service import KeyService
from cardsvc.publication import Publication
from cardsvc.registry.status import StatusLists

_CACHE = 32


class VerifierBundleRow(Base):
    """One minted bundle version (revision 0009)."""

    __tablename__ = "verifier_bundles"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    contents: Mapped[str] = mapped_column(Text)  # {"trust": hash, "shards": {id: hash}}


class TrustListSource(Protocol):
    def current(self, *, now: datetime) -> Publication: ...


@dataclass(frozen=True, kw_only=True)
class BundlePublication:
    body: str
    etag: str
    version: int
    base: int | None


def _claim_hash(token: str, name: str) -> str:
    payload = json.loads(b64url_decode(token.split(".")[1]))
    return hashlib.sha256(json.dumps(payload[name], sort_keys=True).encode()).hexdigest()[:32]


class BundleService:
    """Builds the bundle a partner asks for from the current publications."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        status: StatusLists,
        trust_list: TrustListSource,
        *,
        issuer: str,
        lifetime: timedelta,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._status = status
        self._trust_list = trust_list
        self._issuer = issuer
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}  # publication etag -> content hash
        self._cache: dict[tuple[int, int | None, tuple[int, ...] | None], BundlePublication] = {}

    def _hash(self, publication: Publication, claim: str) -> str:
        found = self._hashes.get(publication.etag)
        if found is None:
            found = _claim_hash(publication.body, claim)
            if len(self._hashes) > 100_000:
                self._hashes.clear()
            self._hashes[publication.etag] = found
        return found

    def _version(self, contents: str, now: datetime) -> tuple[int, datetime]:
        while True:
            with Session(self._engine) as session:
                latest = session.scalars(
                    select(VerifierBundleRow).order_by(VerifierBundleRow.version.desc()).limit(1)
                ).first()
                if (
                    latest is not None
                    and latest.contents == contents
                    and now - latest.issued_at < self._lifetime / 4
                ):
                    return latest.version, latest.issued_at
                version = 1 if latest is None else latest.version + 1
                session.add(VerifierBundleRow(version=version, issued_at=now, contents=contents))
                try:
                    session.commit()
                except IntegrityError:
                    continue  # another process minted it: re-read
                return version, now

    def _contents_since(self, since: int) -> dict[str, str] | None:
        with Session(self._engine) as session:
            row = session.get(VerifierBundleRow, since)
            return None if row is None else dict(json.loads(row.contents)["shards"])

    def latest(
        self, *, now: datetime, since: int | None = None, shards: list[int] | None = None
    ) -> BundlePublication:
        """The current bundle: all shards or ``shards``; a delta when ``since`` is known."""
        trust = self._trust_list.current(now=now)
        ids = self._status.shard_ids()
        publications = {i: self._status.publication(i, now=now) for i in ids}
        hashes = {str(i): self._hash(p, "status_list") for i, p in publications.items()}
        contents = json.dumps(
            {"trust": self._hash(trust, "keys"), "shards": hashes}, sort_keys=True
        )
        version, issued_at = self._version(contents, now)
        wanted = sorted(set(shards)) if shards is not None else ids
        base: int | None = None
        if since is not None and since < version:
            previous = self._contents_since(since)
            if previous is not None:
                base = since
                wanted = [i for i in wanted if previous.get(str(i)) != hashes.get(str(i))]
        key = (version, base, tuple(wanted) if shards is not None or base is not None else None)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        body = encode_bundle(
            issuer=self._issuer,
            version=version,
            issued_at=issued_at,
            expires_at=issued_at + self._lifetime / 2,
            base=base,
            trust_list=trust.body,
            status_lists={
                self._status.uri(i): publications[i].body for i in wanted if i in publications
            },
            signer=self._keys.signer(KeyPurpose.STATUS_LIST, now=now),
        )
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        published = BundlePublication(
            body=body, etag=f'W/"b{version}-{digest}"', version=version, base=base
        )
        with self._lock:
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            self._cache[key] = published
        return published

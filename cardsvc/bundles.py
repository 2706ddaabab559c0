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

Entry-level deltas (``entries=True``, asked with ``?delta=entries``): a changed shard is
sent as an entry patch (:mod:`cardsvc.core.statuspatch`) instead of its whole token when
the patch is the smaller of the two. The patch is the diff of the shard's list as stored
for version N (``verifier_bundle_shards``, revision 0010, addressed by content hash) and
its list now. Without a stored list for N (a version minted before 0010) the shard goes
whole. Patches are opt-in because a verifier that does not know ``status_patches``
would ignore them and keep answering from the old list; only verifiers that ask get them.

Retention (:meth:`BundleService.prune`): versions issued before a retention window are
deleted, except the newest, which always stays so version numbers keep growing; then
the stored lists no remaining version names. A verifier whose version was pruned asks
``since`` an unknown version and gets a full bundle, as above. Pruning races nothing a
request relies on: a delta is built from the contents read for N in one query, and a
list missing when its patch is built sends the shard whole (a list still cached in
memory is the same content, addressed by its hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Delete, Engine, delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.keys import KeyPurpose, b64url_decode
from cardsvc.core.statuslist import StatusList
from cardsvc.core.statuspatch import make_patch
from cardsvc.db.models import VerifierBundleRow, VerifierBundleShardRow
from cardsvc.keystore.service import KeyService
from cardsvc.publication import Publication
from cardsvc.registry.db import write_session
from cardsvc.registry.status import StatusLists

log = logging.getLogger(__name__)

#: Serving prunes at most this often per process (:meth:`BundleService.prune_due`).
PRUNE_INTERVAL = timedelta(hours=1)

_CACHE = 32
_LISTS = 64  # decoded lists kept by content hash (a 2**20-entry shard is 256 KiB)
_IN_CLAUSE = 500  # hashes per query when checking which lists are stored
_PRUNE_BATCH = 500  # versions or stored lists deleted per transaction
_MARK_PAGE = 100  # versions read per query when collecting the lists still named


@dataclass(frozen=True, kw_only=True)
class PruneResult:
    """What one :meth:`BundleService.prune` deleted, and what remains."""

    versions_removed: int
    lists_removed: int
    versions_kept: int
    lists_kept: int
    #: The oldest version still answered with a delta (``None``: no version yet).
    oldest_kept: int | None


class TrustListSource(Protocol):
    def current(self, *, now: datetime) -> Publication: ...


@dataclass(frozen=True, kw_only=True)
class BundlePublication:
    body: str
    etag: str
    version: int
    base: int | None


def _claim_json(token: str, name: str) -> str:
    payload = json.loads(b64url_decode(token.split(".")[1]))
    return json.dumps(payload[name], sort_keys=True)


def _claim_hash(token: str, name: str) -> str:
    return _content_hash(_claim_json(token, name))


def _content_hash(claim_json: str) -> str:
    return hashlib.sha256(claim_json.encode()).hexdigest()[:32]


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
        self._cache: dict[
            tuple[int, int | None, tuple[int, ...] | None, bool], BundlePublication
        ] = {}
        self._stored: set[str] = set()  # content hashes known to be in verifier_bundle_shards
        self._lists: dict[str, StatusList] = {}  # content hash -> decoded list
        self._prune_lock = threading.Lock()
        self._last_prune: datetime | None = None

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

    def _store_lists(self, publications: dict[int, Publication], hashes: dict[str, str]) -> None:
        """Keep each current shard list under its content hash, for later entry deltas."""
        missing = {h: i for i, h in ((int(i), h) for i, h in hashes.items())
                   if h not in self._stored}  # fmt: skip
        if not missing:
            return
        for _attempt in range(2):
            with Session(self._engine) as session:
                found: set[str] = set()
                wanted = sorted(missing)
                for start in range(0, len(wanted), _IN_CLAUSE):
                    chunk = wanted[start : start + _IN_CLAUSE]
                    found.update(
                        session.scalars(
                            select(VerifierBundleShardRow.hash).where(
                                VerifierBundleShardRow.hash.in_(chunk)
                            )
                        )
                    )
                for h, shard in missing.items():
                    if h not in found:
                        claim = _claim_json(publications[shard].body, "status_list")
                        session.add(VerifierBundleShardRow(hash=h, status_list=claim))
                try:
                    session.commit()
                except IntegrityError:
                    continue  # another process stored one of them: look again
            if len(self._stored) > 1_000_000:
                self._stored.clear()  # only a cache of what the table holds
            self._stored.update(missing)
            return

    def _stored_list(self, content_hash: str) -> StatusList | None:
        found = self._lists.get(content_hash)
        if found is None:
            with Session(self._engine) as session:
                row = session.get(VerifierBundleShardRow, content_hash)
            if row is None:
                return None
            found = StatusList.from_json_view(json.loads(row.status_list))
            if len(self._lists) >= _LISTS:
                self._lists.pop(next(iter(self._lists)))
            self._lists[content_hash] = found
        return found

    def _patch(self, base_hash: str | None, publication: Publication) -> dict[str, str] | None:
        """The entry patch from the list stored as ``base_hash`` to ``publication``'s list,
        if one exists and is smaller than the whole token."""
        old = self._stored_list(base_hash) if base_hash is not None else None
        if old is None:
            return None
        new = StatusList.from_json_view(json.loads(_claim_json(publication.body, "status_list")))
        if new.bits != old.bits or len(new) != len(old):
            return None
        patch = make_patch(old, new)
        # "entries" + "sha256" and their JSON punctuation, against the token's quotes.
        if len(patch["entries"]) + len(patch["sha256"]) + 26 >= len(publication.body) + 2:
            return None
        return patch

    def latest(
        self,
        *,
        now: datetime,
        since: int | None = None,
        shards: list[int] | None = None,
        entries: bool = False,
    ) -> BundlePublication:
        """The current bundle: all shards or ``shards``; a delta when ``since`` is known.

        ``entries``: a delta may carry entry patches (see the module docstring).
        """
        trust = self._trust_list.current(now=now)
        ids = self._status.shard_ids()
        publications = {i: self._status.publication(i, now=now) for i in ids}
        hashes = {str(i): self._hash(p, "status_list") for i, p in publications.items()}
        contents = json.dumps(
            {"trust": self._hash(trust, "keys"), "shards": hashes}, sort_keys=True
        )
        self._store_lists(publications, hashes)
        version, issued_at = self._version(contents, now)
        wanted = sorted(set(shards)) if shards is not None else ids
        base: int | None = None
        previous: dict[str, str] = {}
        if since is not None and since < version:
            stored = self._contents_since(since)
            if stored is not None:
                base, previous = since, stored
                wanted = [i for i in wanted if previous.get(str(i)) != hashes.get(str(i))]
        entries = entries and base is not None
        key = (
            version,
            base,
            tuple(wanted) if shards is not None or base is not None else None,
            entries,
        )
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        whole: dict[str, str] = {}
        patches: dict[str, dict[str, str]] = {}
        for i in wanted:
            if i not in publications:
                continue
            patch = self._patch(previous.get(str(i)), publications[i]) if entries else None
            if patch is None:
                whole[self._status.uri(i)] = publications[i].body
            else:
                patches[self._status.uri(i)] = patch
        body = encode_bundle(
            issuer=self._issuer,
            version=version,
            issued_at=issued_at,
            expires_at=issued_at + self._lifetime / 2,
            base=base,
            trust_list=trust.body,
            status_lists=whole,
            status_patches=patches,
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

    # -- retention ------------------------------------------------------------------------

    def prune(self, *, now: datetime, keep: timedelta) -> PruneResult:
        """Delete the versions issued before ``now - keep`` (never the newest), then the
        stored lists no remaining version names.

        Bounded batches, one transaction each; idempotent, and safe beside serving and
        beside another prune (any process). Interrupted, it leaves nothing a request
        relies on, and the next run finishes the work: lists are found unnamed by a full
        pass over the remaining versions, not by what this run deleted.
        """
        cutoff = now - keep
        with Session(self._engine) as session:
            newest = session.scalar(select(func.max(VerifierBundleRow.version)))
        versions_removed = 0
        while newest is not None:
            with write_session(self._engine) as session:
                doomed = session.scalars(
                    select(VerifierBundleRow.version)
                    .where(VerifierBundleRow.version < newest)
                    .where(VerifierBundleRow.issued_at < cutoff)
                    .order_by(VerifierBundleRow.version)
                    .limit(_PRUNE_BATCH)
                ).all()
                if doomed:
                    versions_removed += _deleted(
                        session,
                        delete(VerifierBundleRow).where(VerifierBundleRow.version.in_(doomed)),
                    )
            if len(doomed) < _PRUNE_BATCH:
                break

        named: set[str] = set()
        marked, versions_kept, oldest_kept = self._name_lists(-1, named)
        lists_removed = lists_kept = 0
        after = ""
        while True:
            with Session(self._engine) as session:
                page = session.scalars(
                    select(VerifierBundleShardRow.hash)
                    .where(VerifierBundleShardRow.hash > after)
                    .order_by(VerifierBundleShardRow.hash)
                    .limit(_PRUNE_BATCH)
                ).all()
            if not page:
                break
            after = page[-1]
            # Versions minted since the pass began name lists stored meanwhile.
            marked, minted, _ = self._name_lists(marked, named)
            versions_kept += minted
            unnamed = [h for h in page if h not in named]
            if unnamed:
                with write_session(self._engine) as session:
                    lists_removed += _deleted(
                        session,
                        delete(VerifierBundleShardRow).where(
                            VerifierBundleShardRow.hash.in_(unnamed)
                        ),
                    )
                self._stored.difference_update(unnamed)
            lists_kept += len(page) - len(unnamed)
            if len(page) < _PRUNE_BATCH:
                break
        result = PruneResult(
            versions_removed=versions_removed,
            lists_removed=lists_removed,
            versions_kept=versions_kept,
            lists_kept=lists_kept,
            oldest_kept=oldest_kept,
        )
        if versions_removed or lists_removed:
            log.info(
                "pruned %d bundle version(s) issued before %s and %d stored shard list(s); "
                "kept %d version(s) from %s and %d list(s)",
                versions_removed, cutoff.isoformat(), lists_removed,
                versions_kept, oldest_kept, lists_kept,
            )  # fmt: skip
        return result

    def prune_due(self, *, now: datetime, keep: timedelta) -> PruneResult | None:
        """:meth:`prune`, if :data:`PRUNE_INTERVAL` has passed (by ``now``) since this
        service last pruned; ``None`` when not due, when a prune is running in this
        process already, or when it failed (logged: housekeeping never fails a request).
        """
        if not self._prune_lock.acquire(blocking=False):
            return None
        try:
            last = self._last_prune
            if last is not None and last <= now < last + PRUNE_INTERVAL:
                return None
            self._last_prune = now
            try:
                return self.prune(now=now, keep=keep)
            except SQLAlchemyError:
                log.exception("pruning bundle versions failed; next try in %s", PRUNE_INTERVAL)
                return None
        finally:
            self._prune_lock.release()

    def _name_lists(self, after: int, named: set[str]) -> tuple[int, int, int | None]:
        """Add the list hashes of the versions above ``after`` to ``named``.

        Returns the highest version read (``after`` if none), how many were read and the
        lowest one (``None`` if none).
        """
        count = 0
        lowest: int | None = None
        while True:
            with Session(self._engine) as session:
                rows = session.execute(
                    select(VerifierBundleRow.version, VerifierBundleRow.contents)
                    .where(VerifierBundleRow.version > after)
                    .order_by(VerifierBundleRow.version)
                    .limit(_MARK_PAGE)
                ).all()
            for version, contents in rows:
                named.update(json.loads(contents)["shards"].values())
                lowest = version if lowest is None else lowest
                after = version
            count += len(rows)
            if len(rows) < _MARK_PAGE:
                return after, count, lowest


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE; the rows it removed (another prune may have taken some first)."""
    result: Any = session.execute(statement)
    return int(result.rowcount)

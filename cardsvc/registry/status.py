"""Status-list shards: random index allocation and incremental publication.

Every card holds one entry ``(shard, idx)`` in a 2-bit status list; ``idx`` is chosen at
random in the open shard (herd privacy: a verifier fetching a shard learns nothing about
which card it checks). The database's unique ``(status_shard, status_idx)`` constraint is
the authority; this process keeps, per shard, a bitmap of used indexes so a random pick
almost never collides, and a lost race with another process is retried by the caller.

Publication never rescans the database after a change:

- A shard is loaded once (one indexed range read of its cards) on first use.
- Changes made by this process are applied to the in-memory :class:`StatusList` right
  after their transaction commits (:meth:`StatusLists.apply`), so the next served list
  shows them.
- Changes made by other processes (other API workers, the batch and sweep commands) are
  found through ``card_events``, whose ids only grow: :meth:`StatusLists.sync` reads the
  events after the last id it has seen, joined to the cards' *current* state (so applying
  them is idempotent and order-free). PostgreSQL sequence values can become visible out of
  order (a transaction holding a lower id commits later), so ids skipped below the
  watermark are remembered and re-read for a while (``GAP_RETENTION_SECONDS``).

A served list is re-signed only when its shard changed, when the signing key changed, or
when half its lifetime has passed; otherwise the cached body and ETag are served.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from cardsvc.core.keys import KeyPurpose
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from cardsvc.db.models import Card, CardEvent, ECard, StatusShard
from cardsvc.keystore.service import KeyService
from cardsvc.publication import Publication, etag_of
from cardsvc.registry.ecard_states import ecard_card_state
from cardsvc.registry.errors import NotFoundError
from cardsvc.registry.lifecycle import STATUS_OF, CardState

BITS = 2
#: Ids skipped by a sync are re-read this long (a late commit) before they count as gaps.
GAP_RETENTION_SECONDS = 120.0
_MAX_GAPS = 50_000
_SYNC_BATCH = 50_000


class ShardNotFoundError(NotFoundError):
    code = "status-list-not-found"


@dataclass(kw_only=True)
class _Shard:
    shard: int
    size: int
    statuses: StatusList
    used: bytearray
    used_count: int = 0
    version: int = 0
    publication: Publication | None = None
    published_version: int = -1
    published_kid: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark_used(self, idx: int) -> bool:
        byte, bit = idx >> 3, 1 << (idx & 7)
        if self.used[byte] & bit:
            return False
        self.used[byte] |= bit
        self.used_count += 1
        return True

    def is_used(self, idx: int) -> bool:
        return bool(self.used[idx >> 3] & (1 << (idx & 7)))

    def set_status(self, idx: int, status: Status) -> None:
        if self.statuses.get(idx) != status:
            self.statuses.set(idx, status)
            self.version += 1


class StatusLists:
    """The status-list shards of this issuer, kept in memory and published on demand."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        *,
        issuer: str,
        shard_size: int,
        max_fill: float,
        ttl_seconds: int,
        lifetime: timedelta,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._issuer = issuer.rstrip("/")
        self.shard_size = shard_size
        self._max_fill = max_fill
        self._ttl = ttl_seconds
        self._lifetime = lifetime
        self._lock = threading.RLock()
        self._shards: dict[int, _Shard] = {}
        self._open_shard: int | None = None
        self._watermark: int | None = None
        self._gaps: dict[int, float] = {}
        self._last_sync = -float("inf")

    # -- addresses ------------------------------------------------------------------

    def uri(self, shard: int) -> str:
        """The stable URL a shard is published at (the ``uri`` of status references)."""
        return f"{self._issuer}/v1/status-lists/{shard}"

    # -- loading --------------------------------------------------------------------

    def _ensure_watermark(self, conn: Connection) -> None:
        if self._watermark is None:
            self._watermark = conn.scalar(select(func.max(CardEvent.id))) or 0

    def _load(self, conn: Connection, shard: int) -> _Shard:
        loaded = self._shards.get(shard)
        if loaded is not None:
            return loaded
        self._ensure_watermark(conn)
        size = conn.scalar(select(StatusShard.size).where(StatusShard.shard == shard))
        if size is None:
            raise ShardNotFoundError(f"no status list {shard}", shard=shard)
        state = _Shard(
            shard=shard,
            size=size,
            statuses=StatusList.new(size, BITS),
            used=bytearray((size + 7) // 8),
        )
        rows = conn.execute(select(Card.status_idx, Card.state).where(Card.status_shard == shard))
        statuses = state.statuses
        for idx, card_state in rows:
            state.mark_used(idx)
            status = STATUS_OF[card_state]
            if status:
                statuses.set(idx, status)
        # E-cards share the shards: their entry is their own state combined with the card's.
        ecards = conn.execute(
            select(ECard.status_idx, ECard.state, Card.state)
            .join(Card, Card.id == ECard.card_id)
            .where(ECard.status_shard == shard)
        )
        for idx, ecard_state, card_state in ecards:
            state.mark_used(idx)
            status = STATUS_OF[ecard_card_state(ecard_state, card_state)]
            if status:
                statuses.set(idx, status)
        self._shards[shard] = state
        return state

    def shard_ids(self) -> list[int]:
        with self._engine.connect() as conn:
            return list(conn.scalars(select(StatusShard.shard).order_by(StatusShard.shard)))

    # -- allocation -----------------------------------------------------------------

    def _open(self, now: datetime) -> _Shard:
        """The shard new indexes go to, opening the next one when it is full.

        Shard rows are created and closed in their own short transactions (never inside
        a caller's write transaction, which on SQLite holds the only write lock).
        """
        if self._open_shard is not None:
            current = self._shards[self._open_shard]
            if current.used_count < self._max_fill * current.size:
                return current
            self._close(current.shard)
            self._open_shard = None
        while True:
            with self._engine.connect() as conn:
                shard = conn.scalar(
                    select(func.min(StatusShard.shard)).where(StatusShard.closed.is_(False))
                )
                highest = conn.scalar(select(func.max(StatusShard.shard)))
            if shard is None:
                shard = 0 if highest is None else highest + 1
                try:
                    with self._engine.begin() as conn:
                        _insert_shard(conn, shard, self.shard_size, now)
                except IntegrityError:
                    pass  # another process opened it first: use theirs
            with self._engine.connect() as conn:
                state = self._load(conn, shard)
            if state.used_count < self._max_fill * state.size:
                self._open_shard = shard
                return state
            self._close(shard)

    def _close(self, shard: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(StatusShard).where(StatusShard.shard == shard).values(closed=True))

    def allocate(self, *, now: datetime) -> tuple[int, int]:
        """A random unused ``(shard, idx)``; the caller's insert makes it final.

        Call it before the write transaction. If another process took the same index, the
        insert fails on the unique constraint and the caller retries with a new one; the
        index stays marked as used here either way.
        """
        with self._lock:
            state = self._open(now)
            while True:
                idx = secrets.randbelow(state.size)
                if state.mark_used(idx):
                    return state.shard, idx

    def allocate_many(self, count: int, *, now: datetime) -> list[tuple[int, int]]:
        """``count`` random unused entries (for batch issuance), opening shards as they fill."""
        out: list[tuple[int, int]] = []
        randbelow = secrets.randbelow
        with self._lock:
            while len(out) < count:
                state = self._open(now)
                room = int(self._max_fill * state.size) - state.used_count
                take = min(count - len(out), max(room, 1))
                shard, size, mark = state.shard, state.size, state.mark_used
                while take:
                    idx = randbelow(size)
                    if mark(idx):
                        out.append((shard, idx))
                        take -= 1
        return out

    # -- changes --------------------------------------------------------------------

    def apply(self, changes: list[tuple[int, int, CardState]]) -> None:
        """Apply committed ``(shard, idx, state)`` changes to loaded shards.

        A change other than an issue may move e-cards that follow the card: those are
        picked up at once by a :meth:`sync` (one indexed read of the new events).
        """
        follow = False
        with self._lock:
            for shard, idx, card_state in changes:
                state = self._shards.get(shard)
                if state is not None:
                    state.mark_used(idx)
                    state.set_status(idx, STATUS_OF[card_state])
                follow = follow or card_state is not CardState.PENDING_PERSONALIZATION
        if follow and self._shards:
            self.sync()

    def sync_due(self, interval_seconds: float) -> int:
        """:meth:`sync`, at most once per ``interval_seconds`` (0: every time)."""
        tick = time.monotonic()
        if tick - self._last_sync < interval_seconds:
            return 0
        self._last_sync = tick
        return self.sync()

    def sync(self) -> int:
        """Apply changes other processes committed since the last sync; returns how many."""
        applied = 0
        with self._lock, self._engine.connect() as conn:
            self._ensure_watermark(conn)
            assert self._watermark is not None  # noqa: S101 - set just above
            now = time.monotonic()
            self._gaps = {
                i: seen for i, seen in self._gaps.items() if now - seen < GAP_RETENTION_SECONDS
            }
            while True:
                condition = CardEvent.id > self._watermark
                if self._gaps:
                    condition = or_(condition, CardEvent.id.in_(list(self._gaps)))
                rows = conn.execute(
                    select(
                        CardEvent.id,
                        Card.status_shard,
                        Card.status_idx,
                        Card.state,
                        ECard.status_shard,
                        ECard.status_idx,
                        ECard.state,
                    )
                    .join(Card, Card.id == CardEvent.card_id)
                    .outerjoin(ECard, ECard.card_id == Card.id)
                    .where(condition)
                    .order_by(CardEvent.id)
                    .limit(_SYNC_BATCH)
                ).all()
                if not rows:
                    return applied
                expected = self._watermark + 1
                for event_id, shard, idx, card_state, e_shard, e_idx, e_state in rows:
                    self._gaps.pop(event_id, None)
                    if event_id > self._watermark:
                        if event_id > expected and len(self._gaps) < _MAX_GAPS:
                            for missing in range(expected, min(event_id, expected + _MAX_GAPS)):
                                self._gaps.setdefault(missing, now)
                        expected = event_id + 1
                        self._watermark = event_id
                    state = self._shards.get(shard)
                    if state is not None:
                        state.mark_used(idx)
                        state.set_status(idx, STATUS_OF[card_state])
                    if e_shard is not None and (e_entry := self._shards.get(e_shard)):
                        e_entry.mark_used(e_idx)
                        e_entry.set_status(e_idx, STATUS_OF[ecard_card_state(e_state, card_state)])
                    applied += 1
                if len(rows) < _SYNC_BATCH:
                    return applied

    # -- publication ----------------------------------------------------------------

    def status_of(self, shard: int, idx: int) -> Status:
        """The entry's current status; no I/O once its shard is loaded (online verify)."""
        loaded = self._shards.get(shard)
        if loaded is not None and 0 <= idx < loaded.size:
            return Status(loaded.statuses.get(idx))
        with self._lock, self._engine.connect() as conn:
            return Status(self._load(conn, shard).statuses.get(idx))

    def published_at(self) -> dict[int, datetime]:
        """When this process signed the status list it serves, per shard it has served."""
        with self._lock:
            shards = list(self._shards.values())
        return {s.shard: s.publication.signed_at for s in shards if s.publication is not None}

    def publication(self, shard: int, *, now: datetime) -> Publication:
        """The signed Status List Token of ``shard`` as it should be served now."""
        with self._lock, self._engine.connect() as conn:
            state = self._load(conn, shard)
        kid = self._keys.signing_record(KeyPurpose.STATUS_LIST, now=now).kid
        with state.lock:
            current = state.publication
            if (
                current is not None
                and state.published_version == state.version
                and state.published_kid == kid
                and now - current.signed_at < self._lifetime / 2
            ):
                return current
            with self._lock:
                version = state.version
                snapshot = StatusList(bytearray(state.statuses.to_bytes()), BITS, state.size)
            token = encode_status_list_jwt(
                snapshot,
                sub=self.uri(shard),
                iat=now,
                exp=now + self._lifetime,
                ttl=self._ttl,
                signer=self._keys.signer(KeyPurpose.STATUS_LIST, now=now),
            )
            publication = Publication(body=token, etag=etag_of(token), signed_at=now)
            state.publication = publication
            state.published_version = version
            state.published_kid = kid
            return publication


def _insert_shard(conn: Connection, shard: int, size: int, now: datetime) -> None:
    conn.execute(
        insert(StatusShard).values(shard=shard, size=size, bits=BITS, closed=False, created_at=now)
    )

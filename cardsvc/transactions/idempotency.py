"""Idempotency-Key for POST endpoints, stored in the issuer database.

Semantics (IETF httpapi idempotency-key draft, REFERENCE.md): missing key -> 400; the same
key with another payload -> 422; the same key while the first request is in flight -> 409;
a completed request replays its stored response. Keys belong to one client.

The record lives in the database, not in process memory, so it holds across workers and
restarts. :meth:`IdempotencyStore.begin` commits an ``in_flight`` row on its own (the
primary key decides which of concurrent requests goes first); the route then writes the
final response *in the same database transaction* as the ledger entry
(:meth:`complete_in`), so a crash leaves either both or neither. An ``in_flight`` row older
than ``stale_after`` (a crashed worker) may be taken over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.db.models import IdempotencyRecord
from cardsvc.db.states import IdempotencyState
from cardsvc.registry.db import read_session, write_session
from cardsvc.transactions.errors import (
    IdempotencyKeyError,
    IdempotencyKeyReusedError,
    RequestInFlightError,
)

MAX_KEY_LENGTH = 255


def request_hash(method: str, path: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise IdempotencyKeyError(
            "idempotency-key-missing", "this endpoint requires an Idempotency-Key header"
        )
    if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise IdempotencyKeyError(
            "idempotency-key-invalid", "Idempotency-Key must be 1-255 printable ASCII"
        )
    return key


@dataclass(frozen=True, kw_only=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Claim:
    """The right to process one (client, key): hand it to :meth:`complete_in`."""

    client_id: str
    key: str
    request_hash: str


class IdempotencyStore:
    def __init__(self, engine: Engine, *, stale_after: timedelta = timedelta(minutes=2)) -> None:
        self._engine = engine
        self._stale_after = stale_after

    def begin(
        self, client_id: str, key: str, digest: str, *, now: datetime
    ) -> Claim | StoredResponse:
        """Claim the key, or return the stored response; raises 409 / 422 as the draft says."""
        try:
            with write_session(self._engine) as session:
                session.add(
                    IdempotencyRecord(
                        client_id=client_id,
                        key=key,
                        request_hash=digest,
                        state=IdempotencyState.IN_FLIGHT,
                        created_at=now,
                    )
                )
            return Claim(client_id=client_id, key=key, request_hash=digest)
        except IntegrityError:
            pass
        with read_session(self._engine) as session:
            row = session.get(IdempotencyRecord, (client_id, key))
        if row is None:  # deleted after a failure in between: try once more
            return self.begin(client_id, key, digest, now=now)
        if row.request_hash != digest:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was used with a different request payload"
            )
        if (
            row.state is IdempotencyState.DONE
            and row.status_code is not None
            and row.response is not None
        ):
            return StoredResponse(status_code=row.status_code, body=json.loads(row.response))
        if now - row.created_at >= self._stale_after and self._take_over(row, now):
            return Claim(client_id=client_id, key=key, request_hash=digest)
        raise RequestInFlightError(
            "a request with this Idempotency-Key is still being processed; retry later"
        )

    def _take_over(self, row: IdempotencyRecord, now: datetime) -> bool:
        with write_session(self._engine) as session:
            taken = session.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.client_id == row.client_id,
                    IdempotencyRecord.key == row.key,
                    IdempotencyRecord.state == IdempotencyState.IN_FLIGHT,
                    IdempotencyRecord.created_at == row.created_at,
                )
                .values(created_at=now)
            ).rowcount  # type: ignore[attr-defined]
        return bool(taken == 1)

    @staticmethod
    def complete_in(
        session: Session, claim: Claim, response: StoredResponse, *, now: datetime
    ) -> None:
        """Store the final response inside the caller's transaction."""
        session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.client_id == claim.client_id,
                IdempotencyRecord.key == claim.key,
            )
            .values(
                state=IdempotencyState.DONE,
                status_code=response.status_code,
                response=json.dumps(response.body, separators=(",", ":")),
                completed_at=now,
            )
        )

    def complete(self, claim: Claim, response: StoredResponse, *, now: datetime) -> None:
        with write_session(self._engine) as session:
            self.complete_in(session, claim, response, now=now)

    def release(self, claim: Claim) -> None:
        """Forget an in-flight claim whose request failed unexpectedly (it may be retried)."""
        with write_session(self._engine) as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.client_id == claim.client_id,
                    IdempotencyRecord.key == claim.key,
                    IdempotencyRecord.state == IdempotencyState.IN_FLIGHT,
                )
            )

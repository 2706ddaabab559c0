"""Which clients are suspended, as every authenticated request checks it.

Access tokens are verified locally, without a database read, so a suspension would
otherwise reach a token only when it expires (``ACCESS_TOKEN_LIFETIME``). Each process
keeps the set of suspended client ids and reads it again when it is older than
``REFRESH``: a suspension made anywhere (``cardsvc clients suspend``, another issuer
process) ends the client's tokens within that time, and at once in the process that
made it. One small query for all clients every few seconds, not one per request:
suspended clients are few, and the verify hot path stays without a round trip.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cardsvc.auth.tokens import AuthenticationError
from cardsvc.db.models import ClientRow
from cardsvc.db.states import ClientStatus

#: How long a process trusts the set it read: the longest a suspension takes to apply.
REFRESH = timedelta(seconds=2)


class SuspendedClientError(AuthenticationError):
    """A valid access token of a client suspended since (401, as for no credentials)."""

    def __init__(self, client_id: str) -> None:
        super().__init__("this client is suspended; its access tokens no longer count")
        self.client_id = client_id


class Suspensions:
    """The suspended client ids of one database, read at most every ``refresh``."""

    def __init__(self, engine: Engine, *, refresh: timedelta = REFRESH) -> None:
        self._engine = engine
        self._refresh = refresh
        # One attribute holds both, so a reader never sees one without the other.
        self._snapshot: tuple[datetime, frozenset[str]] | None = None

    def refuse_if_suspended(self, client_id: str, *, now: datetime) -> None:
        if client_id in self._current(now):
            raise SuspendedClientError(client_id)

    def forget(self) -> None:
        """Read the set again on the next check (a client's status changed here)."""
        self._snapshot = None

    def _current(self, now: datetime) -> frozenset[str]:
        snapshot = self._snapshot
        # A clock moved back also rereads: the snapshot's age is unknown then.
        if snapshot is not None and snapshot[0] <= now < snapshot[0] + self._refresh:
            return snapshot[1]
        with Session(self._engine) as session:
            ids = frozenset(
                session.scalars(
                    select(ClientRow.client_id).where(ClientRow.status == ClientStatus.SUSPENDED)
                )
            )
        self._snapshot = (now, ids)
        return ids

"""The counter's link to the issuer, kept up in the background.

A daemon thread probes the issuer's public ``/health`` every few seconds. While it
answers, the thread fetches the terminal certificate once (needed to work offline later),
refreshes the offline cache (the verifier bundle, as a delta with changed entries: a 304
when nothing changed) whenever its status is older than ``cache_every``, and uploads the
journal's pending records with :func:`reader_agent.counter.sync`, so the pending count
goes back to 0 on its own once the issuer is back. Every change is published.

Before each card check the desk asks :meth:`Link.status_limit`: online, the cache is
refreshed there and then if its status is not current enough, and the check may use
status no older than :data:`~reader_agent.check.ONLINE_MAX_STATUS_AGE` (30 s); a counter
that cannot reach the issuer says so and checks against its cache, with the age shown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cardsvc.core.fetch import RefreshOutcome
from reader_agent.cache import AgentCache
from reader_agent.check import DEFAULT_MAX_STATUS_AGE, ONLINE_MAX_STATUS_AGE
from reader_agent.counter import load_certificate, sync
from reader_agent.errors import AgentError, IssuerUnreachableError
from reader_agent.issuer import IssuerClient, reachable
from reader_agent.page.books import Books, JournalSummary
from reader_agent.page.words import explain

__all__ = ["Link", "LinkState"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LinkState:
    online: bool | None  # None: not probed yet
    detail: str
    journal: JournalSummary
    last_sync: datetime | None = None
    cache: str | None = None  # why the offline cache could not be refreshed, if it could not

    def to_json(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "detail": self.detail,
            "journal": self.journal.to_json(),
            "last_sync": self.last_sync.isoformat() if self.last_sync else None,
            "cache": self.cache,
        }


class Link:
    """Probe, certificate, cache refresh and sync, on one daemon thread."""

    def __init__(
        self,
        *,
        issuer: IssuerClient,
        books: Books,
        cache: AgentCache,
        clock: Callable[[], datetime],
        changed: Callable[[], None],
        probe_every: float,
        cache_every: float,
    ) -> None:
        self._issuer = issuer
        self._books = books
        self._cache = cache
        self._clock = clock
        self._changed = changed
        self._probe_every = probe_every
        self._cache_every = timedelta(seconds=cache_every)
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # one bundle refresh at a time
        self._state = LinkState(online=None, detail="checking the issuer…",
                                journal=books.summary())  # fmt: skip
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counter link", daemon=True)

    @property
    def state(self) -> LinkState:
        with self._lock:
            return self._state

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def wake(self) -> None:
        """Run a round now (after a transaction: recount, and upload what is pending)."""
        self._wake.set()

    def _set(self, **changes: Any) -> None:
        with self._lock:
            before = self._state
            self._state = replace(self._state, **changes)
            changed = self._state != before
        if changed:
            self._changed()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a round must never end the thread
                _log.exception("counter link round failed")
            self._wake.wait(self._probe_every)
            self._wake.clear()

    def tick(self) -> None:
        """One round: probe, then (online) certificate, cache, sync; then recount."""
        if not reachable(self._issuer.base_url):
            self._set(online=False, detail=f"no answer from {self._issuer.base_url}",
                      journal=self._books.summary())  # fmt: skip
            return
        detail = "connected"
        try:
            load_certificate(self._books.state_dir, self._issuer)
            self._refresh_cache()
            self._sync()
        except IssuerUnreachableError:
            self._set(online=False, detail=f"no answer from {self._issuer.base_url}",
                      journal=self._books.summary())  # fmt: skip
            return
        except AgentError as exc:
            detail = f"connected, but: {explain(exc).detail}"
        self._set(online=True, detail=detail, journal=self._books.summary())

    def status_limit(self) -> timedelta:
        """Before a card check: how old a status it may use.

        Online (the issuer answered the last probe), the cache is refreshed now if its
        status is older than ``cache_every``, and the limit is 30 s: a refresh that fails
        leaves status too old to pass, never a stale "good standing" while online.
        Offline, the cache is used as it is, within the offline limit.
        """
        if not self.state.online:
            return DEFAULT_MAX_STATUS_AGE
        try:
            self._refresh_cache()
        except IssuerUnreachableError:
            return DEFAULT_MAX_STATUS_AGE
        return ONLINE_MAX_STATUS_AGE if self.state.online else DEFAULT_MAX_STATUS_AGE

    def _refresh_cache(self) -> None:
        """Refresh the bundle when its status is older than ``cache_every``.

        Raises IssuerUnreachableError (and marks the link offline) when the issuer does
        not answer; a refused bundle is shown and the held one kept.
        """
        with self._refreshing:
            now = self._clock()
            confirmed = self._cache.confirmed_at()
            if confirmed is not None and now - confirmed < self._cache_every:
                return
            try:
                refresh = self._cache.refresh(self._issuer.bundle_url, now=now)
            except AgentError as exc:  # no root pinned, cache directory unwritable
                self._set(cache=exc.detail)
                return
        if refresh.outcome is RefreshOutcome.FAILED:
            self._set(online=False, detail=f"no answer from {self._issuer.base_url}",
                      cache=refresh.detail, journal=self._books.summary())  # fmt: skip
            raise IssuerUnreachableError(refresh.detail)
        # Kept, shown, retried next round; the cache stays as it was.
        self._set(cache=None if refresh.current else refresh.detail)

    def _sync(self) -> None:
        with self._books.open() as journal:
            if not journal.pending():
                return
        certificate = load_certificate(self._books.state_dir, self._issuer)
        with self._books.open() as journal:
            sync(journal, self._issuer, certificate=certificate)
        self._set(last_sync=self._clock())

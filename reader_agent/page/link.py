"""The counter's link to the issuer, kept up in the background.

A daemon thread probes the issuer's public ``/health`` every few seconds. While it
answers, the thread fetches the terminal certificate once (needed to work offline later),
refreshes the offline cache (trust list and status lists) when due, and uploads the
journal's pending records with :func:`reader_agent.counter.sync`, so the pending count
goes back to 0 on its own once the issuer is back. Every change is published.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from reader_agent.cache import AgentCache, fetch_text
from reader_agent.counter import load_certificate, sync
from reader_agent.errors import AgentError, IssuerUnreachableError
from reader_agent.issuer import IssuerClient, reachable, status_list_uris
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
        self._cache_every = cache_every
        self._cache_due = 0.0
        self._lock = threading.Lock()
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

    def _refresh_cache(self) -> None:
        if time.monotonic() < self._cache_due:
            return
        now = self._clock()
        base = self._issuer.base_url
        try:
            self._cache.update_trust_list(fetch_text(f"{base}/v1/trust-list"), now=now)
            for uri in status_list_uris(base):
                self._cache.add_status_list(fetch_text(uri), now=now)
        except AgentError as exc:
            # Kept, shown, retried next round; the cache stays as it was.
            self._set(cache=exc.detail)
            return
        self._cache_due = time.monotonic() + self._cache_every
        self._set(cache=None)

    def _sync(self) -> None:
        with self._books.open() as journal:
            if not journal.pending():
                return
        certificate = load_certificate(self._books.state_dir, self._issuer)
        with self._books.open() as journal:
            sync(journal, self._issuer, certificate=certificate)
        self._set(last_sync=self._clock())

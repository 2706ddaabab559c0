"""The issuer's Prometheus metrics (``GET /metrics``), one :class:`Metrics` per app.

Two kinds of figures:

- **Counted as they happen** (requests and latency by route template and status, verify
  outcomes by reason, tokens minted by purpose, sync records by outcome, database pool
  use): prometheus-client metrics in this object's own registry. With several worker
  processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the workers
  before any of them starts (prometheus-client reads it at import): each process then
  writes its values to files there and whichever worker answers ``/metrics`` sums them
  (the pool gauges as ``livesum``: only live processes count; a worker stopping marks
  itself dead).
- **Read when scraped** (days until each key expires, status publication age, the sync
  backlog and open conflicts): :class:`LiveFigures`, from the key store and the
  database, the same whichever worker answers.

Labels are bounded: a route is its template (``/v1/cards/{card_number}``), never the raw
path; reasons are check names and error codes, fixed sets in the code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, func, select

from cardsvc.db.models import ConflictReview, TerminalJournal, TransactionHold, TransactionRow
from cardsvc.db.models.bundles import VerifierBundleRow
from cardsvc.db.states import TransactionState
from cardsvc.keystore.service import KeyService

_DAY = 86_400.0

#: Latency buckets, seconds: the verify path answers in about a millisecond.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: The route label of a request that matched no route (404s, scanners probing paths).
UNMATCHED = "unmatched"


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multi-process mode, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The counters, histograms and gauges of one issuer app."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        self.requests = Histogram(
            "cardsvc_http_request_duration_seconds",
            "Requests and their latency by method, route template and status",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.verify_outcomes = Counter(
            "cardsvc_verify_outcomes",
            "POST /v1/verify answers: outcome valid or refused, with the check or error code",
            ["outcome", "reason"],
            registry=registry,
        )
        self.tokens_minted = Counter(
            "cardsvc_tokens_minted",
            "E-card QR tokens and offline credentials minted, by purpose",
            ["kind", "purpose"],
            registry=registry,
        )
        self.access_tokens = Counter(
            "cardsvc_access_tokens_issued",
            "OAuth access tokens issued at POST /v1/oauth/token, by client kind",
            ["client_kind"],
            registry=registry,
        )
        self.sync_batches = Counter(
            "cardsvc_sync_batches",
            "Offline sync batches answered (POST /v1/transactions/batches)",
            registry=registry,
        )
        self.sync_records = Counter(
            "cardsvc_sync_records",
            "Offline sync records answered, by outcome (accepted, duplicate, conflict, "
            "rejected, retry)",
            ["outcome"],
            registry=registry,
        )
        self.pool_checked_out = Gauge(
            "cardsvc_db_pool_checked_out",
            "Database connections in use (checked out of the pools of live processes)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "cardsvc_db_pool_size",
            "Database connections the pools of live processes keep (pool_size, "
            "overflow not counted)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._live: list[Collector] = []

    # -- what the app reports ----------------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)

    def verified(self, reason: str | None) -> None:
        """One verify answer: ``None`` when valid, else the failed check or error code."""
        if reason is None:
            self.verify_outcomes.labels("valid", "valid").inc()
        else:
            self.verify_outcomes.labels("refused", reason).inc()

    def minted(self, kind: str, purpose: str, count: int = 1) -> None:
        self.tokens_minted.labels(kind, purpose).inc(count)

    def synced(self, outcomes: Iterable[str]) -> None:
        self.sync_batches.inc()
        for outcome in outcomes:
            self.sync_records.labels(outcome).inc()

    def watch_pool(self, engine: Engine) -> None:
        """Follow ``engine``'s pool: connections checked out and the pool's size."""
        size = getattr(engine.pool, "size", None)
        if callable(size):
            self.pool_size.inc(size())
        gauge = self.pool_checked_out

        def checkout(*_args: Any) -> None:
            gauge.inc()

        def checkin(*_args: Any) -> None:
            gauge.dec()

        event.listen(engine.pool, "checkout", checkout)
        event.listen(engine.pool, "checkin", checkin)

    def add_live(self, collector: Collector) -> None:
        """Figures computed at each scrape (:class:`LiveFigures`)."""
        self._live.append(collector)
        self.registry.register(collector)

    # -- the exposition ------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type: every process's counted figures in
        multi-process mode, this one's otherwise, and the live figures."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        for collector in self._live:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    @staticmethod
    def process_stopped() -> None:
        """Mark this process dead in multi-process mode (its live gauges stop counting)."""
        path = multiprocess_dir()
        if path is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), path=path)  # type: ignore[no-untyped-call]


class LiveFigures(Collector):
    """What ``/metrics`` reads at each scrape: keys, publications, sync backlog."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        *,
        clock: Callable[[], datetime],
        status_published: Callable[[], dict[int, datetime]],
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._clock = clock
        self._status_published = status_published

    def describe(self) -> Iterable[Metric]:
        return []  # no describe-time work (it would query the database at registration)

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        yield from self._key_figures(now)
        yield from self._publication_figures(now)
        yield from self._sync_figures()

    def _key_figures(self, now: datetime) -> Iterable[Metric]:
        expiry = GaugeMetricFamily(
            "cardsvc_key_expiry_days",
            "Days until each key leaves the trust list (verify_until); +Inf while the key "
            "is current (it expires only once rotated)",
            labels=["purpose", "kid", "state"],
        )
        age = GaugeMetricFamily(
            "cardsvc_key_age_days",
            "Days since each key was created (compare with the rotation calendar, "
            "docs/operations.md)",
            labels=["purpose", "kid"],
        )
        for record in self._keys.records():
            purpose = record.purpose.value
            if record.verify_until is None:
                state, days = "current", math.inf
            else:
                state = "retired"
                days = (record.verify_until - now).total_seconds() / _DAY
            expiry.add_metric([purpose, record.kid, state], days)
            age.add_metric([purpose, record.kid], (now - record.created_at).total_seconds() / _DAY)
        yield expiry
        yield age
        offline = self._keys.offline_root
        if offline is not None:
            installed = offline.require_installed().trust_list
            yield GaugeMetricFamily(
                "cardsvc_trust_list_expiry_days",
                "Offline root: days until the installed trust list expires",
                value=(installed.expires_at - now).total_seconds() / _DAY,
            )

    def _publication_figures(self, now: datetime) -> Iterable[Metric]:
        shards = GaugeMetricFamily(
            "cardsvc_status_list_age_seconds",
            "Age of the status list shard this process serves (since it was signed)",
            labels=["shard"],
        )
        for shard, signed_at in sorted(self._status_published().items()):
            shards.add_metric([str(shard)], (now - signed_at).total_seconds())
        yield shards
        with self._engine.connect() as conn:
            issued = conn.scalar(select(func.max(VerifierBundleRow.issued_at)))
        if issued is not None:
            if issued.tzinfo is None:  # SQLite hands back naive UTC
                issued = issued.replace(tzinfo=now.tzinfo)
            yield GaugeMetricFamily(
                "cardsvc_bundle_age_seconds",
                "Age of the newest verifier bundle version (what verifiers fetch)",
                value=(now - issued).total_seconds(),
            )

    def _sync_figures(self) -> Iterable[Metric]:
        with self._engine.connect() as conn:
            ahead = TerminalJournal.highest - TerminalJournal.contiguous
            backlog = conn.scalar(select(func.coalesce(func.sum(ahead), 0)))
            open_rows = conn.scalar(
                select(func.count())
                .select_from(TransactionRow)
                .outerjoin(ConflictReview, ConflictReview.transaction_id == TransactionRow.id)
                .where(TransactionRow.state == TransactionState.CONFLICT)
                .where(ConflictReview.ref.is_(None))
            )
            open_holds = conn.scalar(
                select(func.count())
                .select_from(TransactionHold)
                .outerjoin(ConflictReview, ConflictReview.hold_digest == TransactionHold.digest)
                .where(ConflictReview.ref.is_(None))
            )
        yield GaugeMetricFamily(
            "cardsvc_sync_journal_backlog",
            "Journal sequence numbers above each terminal's contiguous prefix, summed: "
            "records not yet uploaded (gaps) or uploaded out of order",
            value=float(backlog or 0),
        )
        conflicts = GaugeMetricFamily(
            "cardsvc_sync_conflicts_open",
            "Sync conflicts awaiting review: conflict transactions and held forks",
            labels=["kind"],
        )
        conflicts.add_metric(["transaction"], float(open_rows or 0))
        conflicts.add_metric(["hold"], float(open_holds or 0))
        yield conflicts


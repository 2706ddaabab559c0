"""The issuer's hot queries on a loaded PostgreSQL schema (bench/pg_scale.py): time, plans,
and the memory and time to publish the status of every card.

    .venv/bin/python bench/pg_scale.py --count 10000000 --no-audit       # the data set
    .venv/bin/python bench/pg_scale.py --count 300000 --schema cardsvc_scale_audit
    .venv/bin/python bench/bench_pg_scale.py [--schema cardsvc_scale]
        [--audit-schema cardsvc_scale_audit] [--plans plans.md] [--samples 200]

Every figure goes through the issuer's own code (the services :class:`Services` wires),
not hand-written SQL: lookup by citizen ID number, card by number, a person's
transactions page, open entitlements, status publication of every shard (time, peak
memory by tracemalloc and the process's peak RSS), a bundle and a delta after one change,
an audit checkpoint and a full audit verify (on ``--audit-schema``, whose audit log is
complete, when given). The SQL each one emits is captured from SQLAlchemy and run again
under ``EXPLAIN (ANALYZE, BUFFERS)``; each plan is printed (or written to ``--plans``)
with the scans it uses, and a sequential scan of a loaded table is flagged.

Baselines from the same run: a ``SELECT 1`` round trip on the same engine (the floor of
every query), zlib -9 of one shard's bytes (the floor of publishing it) and SHA-256 over
the audit leaves' bytes (the floor of verifying them). Medians over ``--samples`` keys
drawn at random (TABLESAMPLE) from the loaded tables.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pg_scale import DEFAULT_URL, LOADED, schema_url
from cardsvc.audit.verify import verify
from cardsvc.db.migrate import current_revision, upgrade
from cardsvc.ledger.open_entitlements import open_entitlements
from cardsvc.registry.lifecycle import OperatorAction
from cardsvc.registry.persons import parse_citizen_id
from cardsvc.services import Services
from cardsvc.settings import Settings

ISSUER = "https://issuer.bench"
NODE_CARDS = 1_400_000_000
_SCAN = re.compile(r"(Seq Scan|Parallel Seq Scan|Index Only Scan|Index Scan|Bitmap Index Scan"
                   r"|Bitmap Heap Scan)(?: using (\S+))? on (\S+)")  # fmt: skip
_TINY = {"status_shards", "audit_state", "verifier_bundles", "alembic_version", "service_meta"}


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Capture:
    """The statements an engine ran while :meth:`on` was active."""

    engine: Engine
    active: bool = False
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.engine, "before_cursor_execute", self._grab)

    def _grab(self, _c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if self.active and not many:
            self.statements.append((statement, params))

    @contextmanager
    def on(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements = []
        self.active = True
        try:
            yield self.statements
        finally:
            self.active = False


def explain(engine: Engine, statement: str, params: Any) -> str:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of one captured SELECT, rolled back."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        raw.rollback()
        return plan
    finally:
        raw.close()


@dataclass
class Plans:
    engine: Engine
    lines: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)

    def add(self, name: str, statements: list[tuple[str, Any]], limit: int = 6) -> None:
        self.lines.append(f"\n### {name}\n")
        seen: set[str] = set()
        for statement, params in statements:
            if not statement.lstrip().upper().startswith("SELECT") or statement in seen:
                continue
            seen.add(statement)
            if len(seen) > limit:
                break
            plan = explain(self.engine, statement, params)
            scans = [f"{m[1]}{' ' + m[2] if m[2] else ''} on {m[3]}" for m in _SCAN.finditer(plan)]
            for m in _SCAN.finditer(plan):
                if "Seq Scan" in m[1] and m[3] in LOADED:
                    self.flagged.append(f"{name}: {m[0]}")
            self.lines.append("```sql\n" + " ".join(statement.split()) + "\n```")
            self.lines.append(f"params: `{_short(params)}`; scans: {', '.join(scans) or '-'}")
            self.lines.append("```\n" + plan + "\n```")


def _short(params: Any) -> str:
    text_ = repr(params)
    return text_ if len(text_) < 300 else text_[:300] + "..."


def median_ms(func: Callable[[Any], object], keys: list[Any]) -> float:
    times = []
    for key in keys:
        t0 = time.perf_counter()
        func(key)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def services_for(url: str, schema: str, key_dir: Path, now: datetime) -> Services:
    engine_url = schema_url(url, schema)
    probe = Services.from_settings(
        Settings(database_url=engine_url, key_dir=key_dir, key_passphrase="bench")  # type: ignore[arg-type]  # noqa: S106
    )
    with probe.engine.connect() as conn:
        size = conn.scalar(text("SELECT max(size) FROM status_shards")) or (1 << 20)
    probe.engine.dispose()
    settings = Settings(
        database_url=engine_url,
        key_dir=key_dir,
        key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106 - throwaway key store
        issuer=ISSUER,
        status_shard_size=size,
    )
    services = Services.from_settings(settings)
    if not (key_dir / "done").exists():
        services.keys.init(now=now - timedelta(days=1))
        (key_dir / "done").write_text("")
    return services


def sample(engine: Engine, n: int) -> list[tuple[uuid.UUID, str, str]]:
    """``n`` random (person id, citizen ID number, card number) of active cards."""
    with engine.connect() as conn:
        total = float(
            conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'persons'")) or 1
        )
        pct = min(100.0, max(0.001, 100.0 * n * 20 / max(total, 1.0)))
        while True:
            rows = conn.execute(
                text(
                    "SELECT p.id, p.citizen_id, c.card_number"
                    " FROM persons p TABLESAMPLE SYSTEM (:pct)"
                    " JOIN cards c ON c.person_id = p.id WHERE c.state = 'active' LIMIT :n"
                ),
                {"n": n * 5, "pct": pct},
            ).all()
            if len(rows) >= n or pct >= 100.0:
                break
            pct = min(100.0, pct * 4)
    random.Random(5).shuffle(rows)
    return [(r[0], r[1], r[2]) for r in rows[:n]]


def hot_queries(services: Services, plans: Plans, capture: Capture, samples: int) -> None:
    now = datetime.now(UTC)
    keys = sample(services.engine, samples)
    engine = services.engine
    out(f"hot queries: medians over {len(keys)} random persons (ms)")

    def select1(_: object) -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    ops: dict[str, Callable[[tuple[uuid.UUID, str, str]], object]] = {
        "baseline: SELECT 1 round trip": select1,
        "person by citizen ID number": lambda k: services.persons.find(parse_citizen_id(k[1])),
        "card by number": lambda k: services.cards.get(k[2], now=now),
        "transactions page (50)": lambda k: services.transactions.for_person(
            k[0], after=None, limit=50
        ),
        "open entitlements": lambda k: open_entitlements(engine, k[0]),
        "entitlements page (50)": lambda k: services.ledger.list(k[0], after=None, limit=50),
        "card events page (50)": lambda k: services.cards.events(k[2], after=None, limit=50),
    }
    for op in ops.values():
        op(keys[0])  # warm: caches, compiled statements
    medians = {}
    for name, op in ops.items():
        medians[name] = median_ms(op, keys)
    base = medians["baseline: SELECT 1 round trip"]
    for name, ms in medians.items():
        out(f"  {name:<34} {ms:8.3f} ms  x{ms / base:5.1f} of SELECT 1")
    for name, op in ops.items():
        if name.startswith("baseline"):
            continue
        with capture.on() as statements:
            op(keys[1])
        plans.add(name, statements)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def publication(
    url: str, schema: str, key_dir: Path, plans: Plans | None, cards: int
) -> dict[str, float]:
    """Every shard loaded and published by a fresh process's services: time, memory."""
    now = datetime.now(UTC)
    services = services_for(url, schema, key_dir, now)
    ids = services.status.shard_ids()
    gc.collect()
    rss0 = rss_mib()
    t0 = time.perf_counter()
    per_shard = []
    for shard in ids:
        s0 = time.perf_counter()
        services.status.publication(shard, now=now)
        per_shard.append(time.perf_counter() - s0)
    total = time.perf_counter() - t0
    rss1 = rss_mib()
    again = []
    for shard in ids:
        s0 = time.perf_counter()
        services.status.publication(shard, now=now)
        again.append(time.perf_counter() - s0)
    services.engine.dispose()

    # Memory: a second fresh instance under tracemalloc (slower, so not timed).
    traced = services_for(url, schema, key_dir, now)
    capture = Capture(traced.engine)
    gc.collect()
    tracemalloc.start()
    with capture.on() as statements:
        traced.status.publication(ids[0], now=now)
    for shard in ids[1:]:
        traced.status.publication(shard, now=now)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if plans is not None:
        plans.add(f"status publication (shard {ids[0]}, a fresh process)", statements)
    size = traced.status.shard_size
    raw = bytes(traced.status._shards[ids[0]].statuses.to_bytes())  # the bench reads the held list
    traced.engine.dispose()
    z0 = time.perf_counter()
    zlib.compress(raw, 9)
    zlib_s = time.perf_counter() - z0

    mib = 1024 * 1024
    out(f"status publication: {len(ids)} shards of {size:,} entries, {cards:,} cards + e-cards")
    out(f"  load + publish every shard      {total:8.2f} s  ({cards / total:,.0f} entries/s)")
    out(f"  per shard (median)              {statistics.median(per_shard) * 1000:8.1f} ms")
    out(f"  baseline: zlib -9 of one shard  {zlib_s * 1000:8.1f} ms")
    out(f"  served again, unchanged (median){statistics.median(again) * 1e6:8.1f} us")
    out(f"  held after (tracemalloc)        {current / mib:8.1f} MiB; peak {peak / mib:8.1f} MiB")
    out(f"  process peak RSS                {rss1:8.1f} MiB (before loading: {rss0:8.1f} MiB)")
    return {
        "shards": len(ids),
        "size": size,
        "seconds": total,
        "held": current,
        "peak": peak,
        "rss_delta": (rss1 - rss0) * mib,
        "cards": cards,
    }


def bundles(url: str, schema: str, key_dir: Path, plans: Plans, number: str) -> None:
    now = datetime.now(UTC)
    services = services_for(url, schema, key_dir, now)
    capture = Capture(services.engine)
    for shard in services.status.shard_ids():
        services.status.publication(shard, now=now)  # loaded: measure the bundle itself
    t0 = time.perf_counter()
    with capture.on() as statements:
        first = services.bundles.latest(now=now)
    full_s = time.perf_counter() - t0
    plans.add("bundle (all shards)", statements)
    later = now + timedelta(seconds=1)
    with capture.on() as statements:
        services.cards.change(
            number, OperatorAction.REPORT_TEMPORARY_LOSS, reason="bench", actor="bench", now=later
        )
    plans.add("one status change (card by number, update, event, audit leaf)", statements)
    t1 = time.perf_counter()
    with capture.on() as statements:
        delta = services.bundles.latest(now=later, since=first.version, entries=True)
    delta_s = time.perf_counter() - t1
    plans.add("bundle delta since the previous version (entries)", statements)
    services.cards.change(number, OperatorAction.RESUME, reason="bench", actor="bench", now=later)
    out("bundles")
    out(f"  full bundle ({len(first.body):,} bytes)    {full_s * 1000:10.1f} ms")
    out(f"  delta after one change ({len(delta.body):,} bytes) {delta_s * 1000:10.1f} ms")
    services.engine.dispose()


def audit(url: str, schema: str, key_dir: Path, plans: Plans) -> None:
    now = datetime.now(UTC)
    services = services_for(url, schema, key_dir, now)
    capture = Capture(services.engine)
    plans.engine = services.engine  # explain on the audit schema, where the log is full
    size = services.audit.size()
    with services.engine.connect() as conn:
        leaf_bytes = conn.scalar(text("SELECT sum(octet_length(data)) FROM audit_leaves")) or 0
        rows = conn.scalar(
            text(
                "SELECT (SELECT count(*) FROM persons) + (SELECT count(*) FROM cards)"
                " + (SELECT count(*) FROM card_events)"
            )
        )
    t0 = time.perf_counter()
    with capture.on() as statements:
        first = services.audit.sign_checkpoint(now=now, full=services.audit.latest() is None)
    first_s = time.perf_counter() - t0
    plans.add("audit checkpoint (first: every leaf rehashed)", statements)
    number = sample(services.engine, 1)[0][2]
    later = now + timedelta(seconds=1)
    services.cards.change(
        number, OperatorAction.REPORT_TEMPORARY_LOSS, reason="bench", actor="bench", now=later
    )
    t1 = time.perf_counter()
    with capture.on() as statements:
        services.audit.sign_checkpoint(now=later)
    next_s = time.perf_counter() - t1
    plans.add("audit checkpoint (incremental, after one change)", statements)
    services.cards.change(number, OperatorAction.RESUME, reason="bench", actor="bench", now=later)

    keys = {r.kid: r.key for r in services.keys.records()}
    gc.collect()
    rss0 = rss_mib()
    t2 = time.perf_counter()
    with capture.on() as statements, services.engine.connect() as conn:
        report = verify(conn, keys.get)
    verify_s = time.perf_counter() - t2
    rss_growth = rss_mib() - rss0
    plans.add("audit verify (full)", statements, limit=12)
    # Baseline: SHA-256 over the same leaf bytes (the floor of rehashing them).
    with services.engine.connect() as conn:
        t3 = time.perf_counter()
        for (data,) in conn.execute(text("SELECT data FROM audit_leaves")).yield_per(50_000):
            sha256(b"\0" + data.encode()).digest()
        sha_s = time.perf_counter() - t3
    out(f"audit (schema {schema}): {size:,} leaves, {rows:,} audited rows, {leaf_bytes:,} bytes")
    out(f"  first checkpoint (full rehash)   {first_s:8.2f} s (size {first.size:,})")
    out(f"  next checkpoint (incremental)    {next_s * 1000:8.1f} ms")
    out(
        f"  full verify                      {verify_s:8.2f} s "
        f"({(size + rows) / verify_s:,.0f} leaves+rows/s); peak RSS grew "
        f"{rss_growth:.1f} MiB; findings: {report.count}"
    )
    out(f"  baseline: read + SHA-256 leaves  {sha_s:8.2f} s")
    services.engine.dispose()


def extrapolate(fig: dict[str, float], max_fill: float) -> None:
    """Memory per shard (it does not depend on how full a shard is) times the shards of
    1.4 billion entries at ``max_fill``; time in proportion to the entries read."""
    mib = 1024 * 1024
    per_shard = fig["size"] * max_fill
    shards_node = -(-NODE_CARDS // int(per_shard))
    held_shard = fig["held"] / fig["shards"]
    peak_extra = fig["peak"] - fig["held"]
    factor = NODE_CARDS / fig["cards"]
    out(f"extrapolated to {NODE_CARDS:,} entries on one node:")
    out(f"  shards: {NODE_CARDS:,} / ({fig['size']:,.0f} x {max_fill}) = {shards_node:,}")
    out(
        f"  memory held: {held_shard / mib:.3f} MiB per shard x {shards_node:,} = "
        f"{held_shard * shards_node / mib / 1024:,.2f} GiB (+ {peak_extra / mib:.1f} MiB "
        "transient peak while one shard is read and signed)"
    )
    out(
        f"  load + publish all: {fig['seconds']:.1f} s x {NODE_CARDS:,} / {fig['cards']:,.0f} "
        f"= {fig['seconds'] * factor:,.0f} s ({fig['seconds'] * factor / 60:,.1f} min)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--schema", default="cardsvc_scale")
    parser.add_argument("--audit-schema", default=None)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--plans", type=Path, default=None, help="write the plans here")
    parser.add_argument("--skip", nargs="*", default=[], help="hot publication bundles audit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        key_dir = Path(d) / "keys"
        now = datetime.now(UTC)
        services = services_for(args.database_url, args.schema, key_dir, now)
        before = current_revision(services.engine)
        t0 = time.perf_counter()
        upgrade(services.engine)
        after = current_revision(services.engine)
        if before != after:
            out(f"migrated {before} -> {after} in {time.perf_counter() - t0:.1f} s")
        with services.engine.connect() as conn:
            cards = conn.scalar(
                text("SELECT (SELECT count(*) FROM cards) + (SELECT count(*) FROM ecards)")
            )
        plans = Plans(services.engine)
        capture = Capture(services.engine)
        if "hot" not in args.skip:
            hot_queries(services, plans, capture, args.samples)
        number = sample(services.engine, 1)[0][2]
        services.engine.dispose()
        fig = None
        if "publication" not in args.skip:
            fig = publication(args.database_url, args.schema, key_dir, plans, int(cards or 0))
        if "bundles" not in args.skip:
            bundles(args.database_url, args.schema, key_dir, plans, number)
        if args.audit_schema and "audit" not in args.skip:
            audit(args.database_url, args.audit_schema, Path(d) / "audit-keys", plans)
        if fig is not None:
            extrapolate(fig, Settings.model_fields["status_shard_max_fill"].default)
        out(f"sequential scans of loaded tables: {len(plans.flagged)}")
        for line in plans.flagged:
            out(f"  {line}")
        text_ = "\n".join(plans.lines)
        if args.plans:
            args.plans.write_text(text_ + "\n")
            out(f"plans written to {args.plans}")
        else:
            out(text_)


if __name__ == "__main__":
    main()

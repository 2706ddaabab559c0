"""Audit log figures: issuance with and without the log (same run), proof generation on a
stored tree of N leaves (default 10 million), checkpoint signing, and streaming
`audit verify` throughput and peak memory on M leaves (default 1 million) next to plain
SHA-256 over the same bytes.

    .venv/bin/python bench/bench_audit.py [--leaves 10000000] [--issues 300]
        [--verify-leaves 1000000] [--only-verify]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from cardsvc.audit import guard, hooks
from cardsvc.audit import log as audit_log
from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.audit.log import StoredTree
from cardsvc.audit.service import AuditLog
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.merkle import node_hash, verify_consistency, verify_inclusion
from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import upgrade
from cardsvc.registry.persons import Enrolment, parse_citizen_id
from cardsvc.services import Services
from cardsvc.settings import Settings


def _citizen(n: int) -> str:
    from cardsvc.core.identity import gb11643_check_character

    day = datetime(1950, 1, 1) + timedelta(days=n // 900)
    first17 = f"110105{day:%Y%m%d}{n % 900 + 1:03d}"
    return first17 + gb11643_check_character(first17)


def bench_issuance(workdir: Path, issues: int) -> None:
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'issue.db'}",
        key_dir=workdir / "keys",
        key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106 - throwaway key store
        issuer="https://issuer.bench",
    )
    services = Services.from_settings(settings)
    upgrade(services.engine)
    now = datetime.now(UTC)
    services.keys.init(now=now - timedelta(days=1))
    people = [
        services.persons.enrol(
            Enrolment(citizen_id=parse_citizen_id(_citizen(i)), name="张三"), actor="b", now=now
        ).id
        for i in range(2 * issues)
    ]
    real_append = audit_log.append

    def no_log(session: Any, event: Any, **_k: Any) -> int:
        if event.row is not None:  # settles the flush guard as a real append would
            guard.covered(session, event.row)
        return -1

    timings: dict[str, list[float]] = {"with log": [], "without log": []}
    for round_ in range(2 * issues):
        with_log = round_ % 2 == 0  # interleaved, so drift hits both equally
        audit_log.append = real_append if with_log else no_log  # type: ignore[assignment]
        hooks.append = audit_log.append  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        services.cards.issue(people[round_], actor="bench", now=now)
        timings["with log" if with_log else "without log"].append(time.perf_counter() - t0)
    audit_log.append = real_append  # type: ignore[assignment]
    hooks.append = real_append  # type: ignore[attr-defined]
    base = statistics.median(timings["without log"])
    logged = statistics.median(timings["with log"])
    print(f"issuance (SQLite file, synchronous=FULL), {issues} each, medians:")
    print(f"  without log {base * 1e3:8.3f} ms   with log {logged * 1e3:8.3f} ms")
    print(f"  ratio {logged / base:.3f}  (+{(logged - base) * 1e3:.3f} ms per issuance)")
    audit = services.audit
    t0 = time.perf_counter()
    cp = audit.sign_checkpoint(now=now)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    audit.sign_checkpoint(now=now)
    again = time.perf_counter() - t0
    print(
        f"checkpoint of {cp.size} leaves: first (rehash all) {first * 1e3:.1f} ms, "
        f"next (incremental) {again * 1e3:.1f} ms"
    )
    services.engine.dispose()


def build_tree(path: Path, n: int, data_of: Callable[[int], str] = str) -> None:
    """Leaves whose data is ``data_of(i)`` (default str(i)), and every complete subtree
    hash, bulk inserted."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    at = "2026-01-01 00:00:00.000000"
    stack: list[tuple[int, bytes]] = []
    leaves: list[tuple[Any, ...]] = []
    nodes: list[tuple[int, int, bytes]] = []
    sha = hashlib.sha256
    for i in range(n):
        data = data_of(i)
        h = sha(b"\x00" + data.encode()).digest()
        leaves.append((i, h, "bench", f"s:{i}", at, data, b""))
        level, index = 0, i
        while stack and stack[-1][0] == level:
            h = node_hash(stack.pop()[1], h)
            level += 1
            index >>= 1
            nodes.append((level, index, h))
        stack.append((level, h))
        if len(leaves) >= 200_000:
            _flush(db, leaves, nodes)
    _flush(db, leaves, nodes)
    db.execute("UPDATE audit_state SET size = ?", (n,))
    db.commit()
    db.close()


def _flush(db: sqlite3.Connection, leaves: list[Any], nodes: list[Any]) -> None:
    db.executemany(
        "INSERT INTO audit_leaves (idx, leaf_hash, kind, subject, at, data, salt) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        leaves,
    )
    db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    leaves.clear()
    nodes.clear()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def bench_proofs(workdir: Path, n: int) -> None:
    path = workdir / "tree.db"
    t0 = time.perf_counter()
    build_tree(path, n)
    print(f"built a stored tree of {n:,} leaves in {time.perf_counter() - t0:.1f} s")
    engine = make_engine(f"sqlite:///{path}")
    rng = random.Random(1)
    with engine.connect() as conn:
        tree = StoredTree(conn)
        t, root = timed(lambda: tree.root(n), 20)
        print(f"  root from stored nodes: {t * 1e3:.2f} ms")
        idxs = [rng.randrange(n) for _ in range(200)]
        samples = []
        for i in idxs:
            t0 = time.perf_counter()
            proof = tree.inclusion_proof(i, n)
            samples.append(time.perf_counter() - t0)
            verify_inclusion(tree.leaf_hash(i), index=i, size=n, proof=proof, root=root)
        print(
            f"  inclusion proof ({len(proof)} hashes): median "
            f"{statistics.median(samples) * 1e3:.2f} ms, max {max(samples) * 1e3:.2f} ms "
            "over 200 random leaves (all verified)"
        )
        first = n - rng.randrange(1, n // 2)
        t, proof = timed(lambda: tree.consistency_proof(first, n), 50)
        verify_consistency(
            first=first, second=n, first_root=tree.root(first), second_root=root, proof=proof
        )
        print(f"  consistency proof {first:,} -> {n:,} ({len(proof)} hashes): {t * 1e3:.2f} ms")
    # Checkpoint signing at this size: full rehash, then incremental after 1,000 appends.
    services = Services.from_settings(
        Settings(
            database_url=f"sqlite:///{path}",
            key_dir=workdir / "keys",
            key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106  # noqa: S106 - throwaway key store
            issuer="https://issuer.bench",
        )
    )
    audit: AuditLog = services.audit
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    audit.sign_checkpoint(now=now, full=True)
    print(f"  checkpoint, full rehash of {n:,} leaves: {time.perf_counter() - t0:.1f} s")
    from cardsvc.db.session import write_session

    t0 = time.perf_counter()
    for k in range(1000):
        with write_session(services.engine) as session:
            audit_log.append(
                session,
                AuditEvent(kind=AuditKind.KEY_TRUST_LIST, subject=f"s{k}"),
                actor=Actor("b"),
                now=now,
            )
    per_append = (time.perf_counter() - t0) / 1000
    print(
        f"  append at {n:,} leaves (own transaction, synchronous=FULL): {per_append * 1e3:.3f} ms"
    )
    t, cp = timed(lambda: audit.sign_checkpoint(now=now), 5)
    print(f"  checkpoint, incremental (1,000 new leaves, sign, store): {t * 1e3:.1f} ms")
    signer = services.keys.signer(KeyPurpose.AUDIT_CHECKPOINT, now=now)
    from cardsvc.core.checkpoint import sign_checkpoint

    t, _ = timed(
        lambda: sign_checkpoint(
            issuer="x", size=cp.size, root=cp.root, issued_at=now, signer=signer
        ),
        200,
    )
    print(f"  checkpoint JWS signature alone: {t * 1e3:.3f} ms")
    services.engine.dispose()
    engine.dispose()


def bench_verify(workdir: Path, n: int) -> None:
    """`audit verify` over n well-formed leaves and a signed checkpoint, against plain
    SHA-256 of the same leaf bytes (same run); peak Python memory with tracemalloc."""
    from cardsvc.audit.service import CHUNK
    from cardsvc.audit.verify import verify

    path = workdir / "verify.db"
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def data_of(i: int) -> str:
        raw = audit_log.leaf_input(kind="bench", actor="b", subject=f"s:{i}", at=at, data={})
        return raw.decode("ascii")

    t0 = time.perf_counter()
    build_tree(path, n, data_of)
    print(f"built {n:,} well-formed leaves for verify in {time.perf_counter() - t0:.1f} s")
    services = Services.from_settings(
        Settings(
            database_url=f"sqlite:///{path}",
            key_dir=workdir / "verify-keys",
            key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106 - throwaway key store
            issuer="https://issuer.bench",
        )
    )
    now = datetime.now(UTC)
    services.keys.init(now=now)  # appends its key events: n + a few leaves
    services.audit.sign_checkpoint(now=now, full=True)
    keys = {r.kid: r.key for r in services.keys.records()}
    with services.engine.connect() as conn:
        data = [d.encode("ascii") for d in conn.scalars(text("SELECT data FROM audit_leaves"))]
    sha = hashlib.sha256

    def baseline() -> None:
        for d in data:
            sha(b"\x00" + d).digest()

    base, _ = timed(baseline, 3)
    leaves = len(data)
    data.clear()
    print(f"  baseline, SHA-256 of the {leaves:,} leaf inputs in memory: {leaves / base:,.0f}/s")
    for chunk in (CHUNK, 1_000):
        with services.engine.connect() as conn:
            t0 = time.perf_counter()
            report = verify(conn, keys.get, chunk=chunk)
            t = time.perf_counter() - t0
            assert report.first is None, report.first
            tracemalloc.start()
            verify(conn, keys.get, chunk=chunk)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        rate = report.leaves / t
        print(
            f"  audit verify, chunk {chunk:,}: {report.leaves:,} leaves in {t:.1f} s, "
            f"{rate:,.0f} leaves/s ({base / t:.3f} x the baseline rate), "
            f"peak Python memory {peak / 2**20:.1f} MiB "
            f"({peak / report.leaves:.1f} bytes per leaf)"
        )
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  process max RSS so far (build included): {usage / 1024:.0f} MiB")
    services.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=10_000_000)
    parser.add_argument("--issues", type=int, default=300)
    parser.add_argument("--verify-leaves", type=int, default=1_000_000)
    parser.add_argument("--only-verify", action="store_true", help="skip the other figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.only_verify:
            bench_issuance(workdir, args.issues)
            bench_proofs(workdir, args.leaves)
        bench_verify(workdir, args.verify_leaves)


if __name__ == "__main__":
    main()

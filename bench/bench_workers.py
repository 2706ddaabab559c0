"""``POST /v1/verify`` served by ``cardsvc serve --workers 2`` against ``--workers 1``.

    .venv/bin/python bench/bench_workers.py [--requests 12000] [--connections 16]
        [--postgres postgresql+psycopg://root@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0]

The production shape: PostgreSQL (a schema of its own, dropped after) and Redis (a key
prefix of its own), the real ``cardsvc serve`` command in a subprocess, the load client
of ``bench_ecard_verify.py`` (one asyncio process, ``--connections`` keep-alive
connections, a fresh token per request). Rounds alternate between the two servers; the
figure is the median of rounds, two workers as a ratio of one. Goal (issue 20): >= 1.8.
On a 2-core machine the load client shares the cores with the workers, so the ratio
measured here is a floor of what two workers give on a machine of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ecard_verify import load, wait_for  # noqa: E402

PASSPHRASE = "bench passphrase"  # noqa: S105 - a throwaway key store


def world(env: dict[str, str], count: int) -> tuple[list[str], str]:
    """An activated e-card and ``count`` transport tokens; returns (tokens, bearer)."""
    import uuid

    from fastapi.testclient import TestClient
    from fixtures import new_signer
    from issuer_fixtures import activate_ecard, active_card

    from cardsvc.api.app import create_app
    from cardsvc.auth.tokens import issue_access_token
    from cardsvc.core.qrtoken import Purpose
    from cardsvc.db.migrate import upgrade
    from cardsvc.services import Services, utcnow
    from cardsvc.settings import Settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    services = Services.from_settings(settings)
    upgrade(services.engine)
    services.keys.init(now=utcnow() - timedelta(days=1))
    client = TestClient(create_app(settings, services=services))
    ecard = activate_ecard(client, services, active_card(client, services), new_signer())
    view = services.ecards.get(uuid.UUID(ecard["ecard_id"]), now=utcnow())
    now = utcnow()
    tokens = [
        m.token
        for _ in range(count)
        for m in services.ecard_tokens.mint(
            view, Purpose.TRANSPORT, now=now, lifetime=timedelta(minutes=20)
        )
    ]
    bearer = issue_access_token(
        services.keys,
        issuer=settings.issuer,
        subject="bench-partner",
        kind="partner",
        scopes=frozenset({"verify"}),
        now=now,
        purposes=frozenset({"transport"}),
        rate_limit=1_000_000,
    )
    services.engine.dispose()
    return tokens, bearer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=12_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CARDSVC_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("CARDSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    from sqlalchemy import create_engine, text

    schema = f"bench_workers_{secrets.token_hex(4)}"
    admin = create_engine(args.postgres)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    cardsvc = str(Path(sys.executable).with_name("cardsvc"))
    if not Path(cardsvc).exists():
        cardsvc = shutil.which("cardsvc") or "cardsvc"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "CARDSVC_DATABASE_URL": f"{args.postgres}?options=-csearch_path%3D{schema}",
                "CARDSVC_KEY_DIR": str(Path(tmp) / "keys"),
                "CARDSVC_KEY_PASSPHRASE": PASSPHRASE,
                "CARDSVC_ISSUER": "http://127.0.0.1",
                "CARDSVC_REDIS_URL": args.redis,
                "CARDSVC_REDIS_PREFIX": f"{schema}:",
                "CARDSVC_STATUS_SHARD_SIZE": "131072",
            }
            warm = 500
            tokens, bearer = world(env, 2 * warm + 2 * args.rounds * args.requests)
            bodies = [json.dumps({"token": t, "purpose": "transport"}).encode() for t in tokens]
            headers = f"Authorization: Bearer {bearer}\r\n"
            results = run_servers(cardsvc, env, bodies, headers, args, warm)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        import redis

        r = redis.Redis.from_url(args.redis)
        for key in r.scan_iter(f"{schema}:*"):
            r.delete(key)
    print(
        f"POST /v1/verify, `cardsvc serve` on PostgreSQL + Redis, {args.connections} "
        f"connections, {args.requests:,} requests x {args.rounds} rounds, {os.cpu_count()} "
        "cores shared with the load client; medians of rounds"
    )
    print(f"{'server':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>6}")
    med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in results.items()}
    for kind in ("1 worker", "2 workers"):
        m = med[kind]
        errors = sum(x["errors"] for x in results[kind])
        print(
            f"{kind:<28} {m['rps']:>9,.0f} {m['p50']:>8.2f} {m['p99']:>8.2f} {errors:>7.0f} "
            f"{m['rps'] / med['1 worker']['rps']:>6.3f}"
        )


def run_servers(
    cardsvc: str, env: dict[str, str], bodies: list[bytes], headers: str, args: Any, warm: int
) -> dict[str, list[dict[str, float]]]:
    ports = {"1 worker": 18741, "2 workers": 18742}
    procs = {}
    for kind, port in ports.items():
        workers = "1" if kind == "1 worker" else "2"
        cmd = [cardsvc, "serve", "--port", str(port), "--workers", workers]
        procs[kind] = subprocess.Popen(  # noqa: S603
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in ports}
    try:
        for kind, port in ports.items():
            wait_for(port, procs[kind])
        at = 0
        for port in ports.values():
            load(port, bodies[at : at + warm], headers, args.connections)
            at += warm
        for _ in range(args.rounds):
            for kind, port in ports.items():
                chunk = bodies[at : at + args.requests]
                at += args.requests
                results[kind].append(load(port, chunk, headers, args.connections))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=15)
    return results


if __name__ == "__main__":
    main()

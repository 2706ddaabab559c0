"""Online e-card verification over HTTP, and token minting, each next to a raw baseline.

    .venv/bin/python bench/bench_ecard_verify.py [--requests 12000] [--connections 16]
        [--redis redis://127.0.0.1:6379/0]

- ``POST /v1/verify`` (FastAPI, uvicorn with uvloop + httptools as the issuer is served,
  ``cardsvc.api.serving``: one worker process, SQLite,
  in-process replay store unless ``--redis``) vs a bare ASGI endpoint on the same server
  stack doing the same raw ES256 verify of the token's Sig_structure. A bounded asyncio
  load client keeps ``--connections`` keep-alive HTTP/1.1 connections busy on 127.0.0.1;
  every request carries a fresh token (``jti`` is one-time). Goal: >= 0.70 of the bare
  endpoint's rate, p99 <= 10 ms, zero errors.
- Token minting (``TokenService.mint``: claims, CBOR, COSE_Sign1, base45) vs raw ES256 sign.
- Offline QR verify vs raw verify: ``bench/bench_formats.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from timing import median_seconds, print_table  # noqa: E402

PASSPHRASE = "bench passphrase"  # noqa: S105 - a throwaway key store


def settings_for(workdir: Path, redis_url: str | None) -> Any:
    from cardsvc.settings import Settings

    return Settings(
        database_url=f"sqlite:///{workdir / 'cardsvc.db'}",
        key_dir=workdir / "keys",
        key_passphrase=PASSPHRASE,  # type: ignore[arg-type]
        issuer="http://127.0.0.1",
        status_shard_size=131_072,
        redis_url=redis_url,
        ecard_nonce_secret="bench",  # type: ignore[arg-type]  # noqa: S106
    )


# -- servers (subprocesses) -------------------------------------------------------------


def bare_app(token: str) -> Any:
    """A raw ASGI app: read the body, parse JSON, raw ES256 verify of a fixed message."""
    from cardsvc.core import cose
    from cardsvc.core.base45 import b45decode
    from cardsvc.core.keys import VerifyingKey

    message = cose.decode_sign1(b45decode(token[5:]))
    jwk = json.loads((Path(os.environ["BENCH_WORKDIR"]) / "ecard.jwk").read_text())
    key = VerifyingKey.from_jwk(jwk)
    to_be_signed = cose._to_be_signed(message, b"")  # as bench_formats.py
    signature = message.signature

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            event = await receive()
            body += event.get("body", b"")
            more = event.get("more_body", False)
        json.loads(body)
        key.verify_raw(signature, to_be_signed)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"14"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"valid":true}'})

    return app


def serve(kind: str, port: int, workdir: Path, redis_url: str | None) -> None:
    import uvicorn

    from cardsvc.api.serving import server_config

    if kind == "bare":
        app = bare_app((workdir / "sample.txt").read_text())
    else:
        from cardsvc.api.app import create_app

        app = create_app(settings_for(workdir, redis_url))
    # Both servers on the issuer's own protocol (httptools with a bounded request head).
    config = server_config(
        app, host="127.0.0.1", port=port, loop="uvloop", log_level="warning", access_log=False
    )
    uvicorn.Server(config).run()


# -- load client ------------------------------------------------------------------------


async def _connection(
    port: int, requests: list[bytes], latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode())
    finally:
        writer.close()


def load(port: int, bodies: list[bytes], headers: str, connections: int) -> dict[str, float]:
    requests = [
        (
            f"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        share = [requests[i::connections] for i in range(connections)]
        start = time.perf_counter()
        await asyncio.gather(*(_connection(port, s, latencies, errors) for s in share))
        return time.perf_counter() - start

    import uvloop

    elapsed = uvloop.run(run())
    latencies.sort()
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}")
    return {
        "rps": len(requests) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": float(len(errors)),
    }


def wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


# -- world ------------------------------------------------------------------------------


def build_world(workdir: Path, redis_url: str | None, count: int) -> tuple[list[str], str, Any]:
    """An activated e-card and ``count`` fresh transport tokens; returns (tokens, bearer)."""
    from fastapi.testclient import TestClient
    from fixtures import new_signer
    from issuer_fixtures import activate_ecard, active_card

    from cardsvc.api.app import create_app
    from cardsvc.auth.tokens import issue_access_token
    from cardsvc.core.keys import KeyPurpose
    from cardsvc.core.qrtoken import Purpose
    from cardsvc.db.migrate import upgrade
    from cardsvc.services import Services, utcnow

    services = Services.from_settings(settings_for(workdir, redis_url))
    upgrade(services.engine)  # first, so the key events reach the audit log
    services.keys.init(now=utcnow() - timedelta(days=1))
    client = TestClient(create_app(services.settings, services=services))
    ecard = activate_ecard(client, services, active_card(client, services), new_signer())
    view = services.ecards.get(__import__("uuid").UUID(ecard["ecard_id"]), now=utcnow())
    now = utcnow()
    tokens = [
        m.token
        for _ in range(count)
        for m in services.ecard_tokens.mint(
            view, Purpose.TRANSPORT, now=now, lifetime=timedelta(minutes=10)
        )
    ]
    key = services.keys.signing_record(KeyPurpose.ECARD, now=now).key
    (workdir / "ecard.jwk").write_text(json.dumps(key.jwk()))
    (workdir / "sample.txt").write_text(tokens[0])
    bearer = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject="bench-partner",
        kind="partner",
        scopes=frozenset({"verify"}),
        now=now,
        purposes=frozenset({"transport"}),
        rate_limit=1_000_000,  # the bench measures verify, not the limiter's refusals
    )
    return tokens, bearer, (services, view)


def mint_bench(services: Any, view: Any, repeats: int, seconds: float) -> None:
    from cardsvc.core.keys import KeyPurpose
    from cardsvc.core.qrtoken import Purpose
    from cardsvc.services import utcnow

    now = utcnow()
    signer = services.keys.signer(KeyPurpose.ECARD, now=now)
    payload = b"x" * 120
    medians = median_seconds(
        {
            "raw ES256 sign (120 bytes)": lambda: signer.sign(payload),
            "mint one transport token": lambda: services.ecard_tokens.mint(
                view, Purpose.TRANSPORT, now=now
            ),
            "mint one identity token": lambda: services.ecard_tokens.mint(
                view, Purpose.IDENTITY, now=now
            ),
        },
        repeats=repeats,
        seconds=seconds,
    )
    print("\nToken minting (one core, medians):")
    print_table(medians, "raw ES256 sign (120 bytes)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=12_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--serve", choices=["app", "bare"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.workdir, args.redis)
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        warm = 500
        per_round = args.requests
        tokens, bearer, (services, view) = build_world(
            workdir, args.redis, warm + per_round * args.rounds
        )
        env = {**os.environ, "BENCH_WORKDIR": str(workdir)}
        procs = {}
        ports = {"app": 18731, "bare": 18732}
        for kind, port in ports.items():
            cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
            cmd += ["--workdir", str(workdir)] + (["--redis", args.redis] if args.redis else [])
            procs[kind] = subprocess.Popen(cmd, env=env)  # noqa: S603
        try:
            for kind, port in ports.items():
                wait_for(port, procs[kind])
            headers = f"Authorization: Bearer {bearer}\r\n"
            body = [json.dumps({"token": t, "purpose": "transport"}).encode() for t in tokens]
            load(ports["app"], body[:warm], headers, args.connections)
            load(ports["bare"], body[:warm], headers, args.connections)
            results: dict[str, list[dict[str, float]]] = {"app": [], "bare": []}
            for r in range(args.rounds):
                chunk = body[warm + r * per_round : warm + (r + 1) * per_round]
                results["bare"].append(load(ports["bare"], chunk, headers, args.connections))
                results["app"].append(load(ports["app"], chunk, headers, args.connections))
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=10)
        store = "Redis" if args.redis else "in-process"
        print(
            f"POST /v1/verify, {args.connections} connections, {per_round:,} requests x "
            f"{args.rounds} rounds; uvicorn {_version('uvicorn')} + uvloop + httptools, "
            f"1 worker; replay store: {store}; medians of rounds"
        )
        print(
            f"{'endpoint':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>6}"
        )
        med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in results.items()}
        for kind, label in (("bare", "bare ASGI raw ES256 verify"), ("app", "POST /v1/verify")):
            m = med[kind]
            errors = sum(x["errors"] for x in results[kind])
            print(
                f"{label:<44} {m['rps']:>9,.0f} {m['p50']:>8.2f} {m['p99']:>8.2f} "
                f"{errors:>7.0f} {m['rps'] / med['bare']['rps']:>6.3f}"
            )
        mint_bench(services, view, repeats=5, seconds=0.2)
        services.engine.dispose()


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()

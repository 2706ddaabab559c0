"""What request ids, metrics and the access log cost per request, next to the verify path.

    .venv/bin/python bench/bench_observe.py [--repeats 5] [--seconds 0.15] [--tokens 120000]

In process, no network (the ASGI app called directly, as uvicorn would): ``POST
/v1/verify`` on the fast path with a fresh token each call, with and without
:class:`cardsvc.api.observe.Observe`; and Observe around an app that answers at once,
to isolate its cost. "json log" is `cardsvc serve`'s setting (INFO, JSON lines through the
redaction filter, to /dev/null here); "no log" is a level above INFO.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ecard_verify import build_world  # noqa: E402
from timing import median_seconds, print_table  # noqa: E402

from cardsvc.api.app import create_app  # noqa: E402
from cardsvc.api.observe import Observe  # noqa: E402
from cardsvc.ops import logs  # noqa: E402
from cardsvc.ops.metrics import Metrics  # noqa: E402


def scope_for(path: str, bearer: str, length: int) -> dict[str, Any]:
    return {
        "type": "http", "http_version": "1.1", "method": "POST", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "headers": [(b"authorization", f"Bearer {bearer}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(length).encode())],
    }  # fmt: skip


def caller(app: Any, bearer: str, bodies: Iterator[bytes]) -> Callable[[], None]:
    """One request a call, each with the next body (fresh tokens shared by every path)."""
    loop = asyncio.new_event_loop()

    async def one() -> None:
        body = next(bodies, None)
        if body is None:
            raise RuntimeError("out of fresh tokens: raise --tokens or lower --seconds")
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope_for("/v1/verify", bearer, len(body)), receive, send)
        if status != 200:
            raise RuntimeError(f"verify answered {status}")

    return lambda: loop.run_until_complete(one())


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.15)
    parser.add_argument("--tokens", type=int, default=120_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tokens, bearer, (services, _view) = build_world(Path(tmp), None, args.tokens)
        bodies = [json.dumps({"token": t, "purpose": "transport"}).encode() for t in tokens]
        # One app; its Observe wrapper is switched per path (same fast path underneath).
        app = create_app(services.settings, services=services)
        observe = app.observe
        bare = app.dispatch
        sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
        handler = logs.configure(logging.INFO, sink)
        root = logging.getLogger()

        def with_logs(level: int, call: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                root.setLevel(level)
                call()

            return run

        fresh = iter(bodies)  # every verify a fresh token, whichever path sends it
        verify_bare = caller(bare, bearer, fresh)
        verify_quiet = caller(observe, bearer, fresh)
        verify_logged = caller(observe, bearer, fresh)
        metrics = Metrics()
        empty_observed = caller(Observe(_nothing, metrics, fast_route=lambda s: None), bearer,
                                repeat(b"{}"))  # fmt: skip
        empty_bare = caller(_nothing, bearer, repeat(b"{}"))
        medians = median_seconds(
            {
                "verify, no Observe": with_logs(logging.WARNING, verify_bare),
                "verify + Observe, no log": with_logs(logging.WARNING, verify_quiet),
                "verify + Observe, json log": with_logs(logging.INFO, verify_logged),
                "empty app": with_logs(logging.WARNING, empty_bare),
                "empty app + Observe, no log": with_logs(logging.WARNING, empty_observed),
                "empty app + Observe, json log": with_logs(logging.INFO, empty_observed),
            },
            repeats=args.repeats,
            seconds=args.seconds,
        )
        root.removeHandler(handler)
        used = len(bodies) - sum(1 for _ in fresh)
        print(f"in-process ASGI calls, median of {args.repeats} interleaved repeats "
              f"({used:,} verified tokens)")  # fmt: skip
        print_table(medians, "verify, no Observe")
        for name in ("no log", "json log"):
            extra = medians[f"empty app + Observe, {name}"] - medians["empty app"]
            print(f"Observe costs {extra * 1e6:.1f} us per request ({name})")
        services.engine.dispose()


if __name__ == "__main__":
    main()

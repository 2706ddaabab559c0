"""Bytes a counter downloads per cache refresh: the verifier bundle with entry deltas,
next to what the agent downloaded before (the trust list and every status list, whole).

Measured through the agent's own refresh (``reader_agent.cache.AgentCache.refresh``, i.e.
``cardsvc.core.fetch.BundleFetcher``) over HTTP from a stand-in for the issuer's
``/v1/bundles/latest`` (``?since=&delta=entries``, ETag/304), ``/v1/trust-list`` and
``/v1/status-lists/{n}``, serving what the real encoders make for 10 million cards (10
shards of 2**20 entries, 1% revoked, :mod:`bench_bundle`); then 1,000 random status
changes. At 1.4 billion cards both are extrapolated as in ``bench_bundle.py`` (the entry
delta built with the real encoders over 1,336 shards, stand-in digests).

    .venv/bin/python bench/bench_counter_refresh.py
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench_bundle import CHANGES, NOW, SHARD, SHARDS, TARGET, Issuer, entry_delta_at_target, uri

from cardsvc.core.references import StatusReference
from cardsvc.core.statuslist import Status
from cardsvc.core.statuspatch import make_patch
from cardsvc.publication import etag_of
from reader_agent.cache import AgentCache


class StandIn:
    """What the issuer serves, swapped in place as its content changes."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.version = 1
        self.full = issuer.bundle(1, None, {uri(i): issuer.token(i) for i in range(SHARDS)})
        self.delta: str | None = None  # since version 1, once changed
        self.shards = [issuer.token(i) for i in range(SHARDS)]

    def answer(self, path: str, if_none_match: str | None) -> tuple[int, str, dict[str, str]]:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path == "/v1/trust-list":
            return 200, self.issuer.trust, {}
        if parts.path.startswith("/v1/status-lists/"):
            return 200, self.shards[int(parts.path.rsplit("/", 1)[1])], {}
        since = query.get("since", [None])[0]
        body = self.delta if since == "1" and self.delta is not None else self.full
        headers = {"ETag": etag_of(body), "Bundle-Version": str(self.version)}
        if since == str(self.version) or if_none_match == headers["ETag"]:
            return 304, "", headers
        return 200, body, headers


def serve(stand_in: StandIn) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, headers = stand_in.answer(self.path, self.headers.get("If-None-Match"))
            data = body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def old_refresh(base: str) -> int:
    """The agent before: GET the trust list, then every status list shard, whole."""
    total = 0
    for path in ["/v1/trust-list", *(f"/v1/status-lists/{i}" for i in range(SHARDS))]:
        with urllib.request.urlopen(base + path, timeout=30) as answer:  # noqa: S310
            total += len(answer.read())
    return total


def median_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        run()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def main() -> None:
    rng = random.Random(8)
    issuer = Issuer.make(rng)
    stand_in = StandIn(issuer)
    server, base = serve(stand_in)
    url = f"{base}/v1/bundles/latest"
    now = NOW + timedelta(minutes=1)
    try:
        with tempfile.TemporaryDirectory() as work:
            cache = AgentCache(Path(work) / "cache", clock=lambda: now)
            cache.pin_root(issuer.root.verifying_key())
            first = cache.refresh(url, now=now)
            assert first.bundle is not None and first.bundle.version == 1, first.detail

            before, touched = issuer.change(rng)
            stand_in.shards = [issuer.token(i) for i in range(SHARDS)]
            patches = {uri(i): make_patch(before[i], issuer.lists[i]) for i in sorted(touched)}
            stand_in.delta = issuer.bundle(2, 1, {}, patches)
            stand_in.full = issuer.bundle(2, None, {uri(i): t for i, t in
                                                    enumerate(stand_in.shards)})  # fmt: skip
            stand_in.version = 2
            old = old_refresh(base)
            delta = cache.refresh(url, now=now)
            assert delta.bundle is not None and delta.bundle.version == 2, delta.detail
            # The agent now reads a changed entry as the issuer set it.
            shard, idx = next(
                (i, j) for i in sorted(touched) for j in range(SHARD)
                if issuer.lists[i].get(j) == Status.SUSPENDED
            )  # fmt: skip
            status = cache.status(StatusReference(idx=idx, uri=uri(shard)), now=now).status
            assert status == Status.SUSPENDED
            unchanged = cache.refresh(url, now=now)
            old_time = median_seconds(lambda: old_refresh(base))
    finally:
        server.shutdown()

    cards = SHARDS * SHARD
    old_per_card = old / cards
    _patches, target_delta = entry_delta_at_target(issuer, rng)
    print(f"measured: {cards:,} cards in {SHARDS} shards, {CHANGES:,} status changes")
    print(f"  before: trust list + every status list   {old:>12,} bytes per refresh "
          f"({old_time * 1000:.0f} ms over loopback)")  # fmt: skip
    print(f"  now:    first refresh (full bundle)      {first.downloaded:>12,} bytes")
    print(f"  now:    after the changes (entry delta)  {delta.downloaded:>12,} bytes "
          f"({delta.downloaded / old:.1%} of before)")  # fmt: skip
    print(f"  now:    nothing changed (304)            {unchanged.downloaded:>12,} bytes "
          f"({unchanged.detail})")  # fmt: skip
    print(f"extrapolated to {TARGET:,} cards:")
    print(f"  before: {old_per_card * TARGET:>14,.0f} bytes ({old_per_card * TARGET / 2**20:,.0f} "
          "MiB) every refresh")  # fmt: skip
    print(f"  now:    {len(target_delta):>14,} bytes ({len(target_delta) / 2**10:,.0f} KiB) after "
          f"{CHANGES:,} changes, {len(target_delta) / (old_per_card * TARGET):.2%} of before")


if __name__ == "__main__":
    main()

"""The verify path's shared-store step on one Redis server vs a 3-master Redis Cluster.

    .venv/bin/python bench/bench_redis_cluster.py [--appendfsync always|everysec|no]
        [--repeats 7] [--seconds 0.5]

Starts, in a temporary directory on free loopback ports, one ``redis-server`` and a
3-master cluster of the same binary and configuration (``appendonly yes`` with
``--appendfsync``, default ``always`` as the README asks for the replay memory), then
times what ``POST /v1/verify`` does in Redis once a token passed its checks:
``RedisRateLimiter.hit_async`` counting the caller and recording a fresh ``jti``. On one
server that is one Lua script (both keys); on the cluster the counter script, then
``SET NX EX`` on the jti's own slot (two round trips, see ``cardsvc/ratelimit.py``).
Each path runs one at a time (latency) and 16 in flight on one event loop (throughput);
``PING`` on each is the bare round trip. Paths take turns within each repeat; medians,
ratios to the single server's script. No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from redis_servers import start_cluster, start_server  # noqa: E402
from timing import median_seconds, print_table  # noqa: E402

from cardsvc.ratelimit import RedisRateLimiter  # noqa: E402
from cardsvc.redisstore import RedisStore  # noqa: E402
from cardsvc.replay import OneTimeUse, RedisReplayCache  # noqa: E402

IN_FLIGHT = 16
_serial = itertools.count()


def verify_step(store: RedisStore) -> Callable[[], Coroutine[Any, Any, object]]:
    """One verify's Redis work: count partner ``n`` (of 64), record a fresh jti."""
    limiter = RedisRateLimiter(store, prefix="bench:rate:")
    cache = RedisReplayCache(store, prefix="bench:replay:")

    async def step() -> object:
        n = next(_serial)
        use = OneTimeUse(cache, f"qr:{n:032x}", 120)
        admission = await limiter.hit_async(f"verify:partner-{n % 64}", limit=10**9, then_use=use)
        assert admission.first_use is True
        return admission

    return step


def ping(store: RedisStore) -> Callable[[], Coroutine[Any, Any, object]]:
    async def step() -> object:
        client = store.client()
        if store.is_cluster:  # one node, as a command on one key goes to one master
            return await client.ping(target_nodes=client.get_random_node())  # type: ignore[call-arg]
        return await client.ping()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appendfsync", choices=["always", "everysec", "no"], default="always")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp, ExitStack() as stack:
        fsync = args.appendfsync
        single = start_server(stack, Path(tmp) / "single", appendfsync=fsync, cluster=False)
        cluster = start_cluster(stack, Path(tmp) / "cluster", appendfsync=fsync)
        loop = asyncio.new_event_loop()
        try:
            stores = {
                "single": RedisStore(f"redis://127.0.0.1:{single}/0"),
                "cluster": RedisStore.cluster(cluster),
            }

            def one(make: Callable[[], Coroutine[Any, Any, object]]) -> Callable[[], object]:
                return lambda: loop.run_until_complete(make())

            def many(make: Callable[[], Coroutine[Any, Any, object]]) -> Callable[[], object]:
                async def batch() -> object:
                    return await asyncio.gather(*(make() for _ in range(IN_FLIGHT)))

                return lambda: loop.run_until_complete(batch())

            steps = {name: verify_step(store) for name, store in stores.items()}
            pings = {name: ping(store) for name, store in stores.items()}
            print(f"redis-server, appendonly yes, appendfsync {fsync}")
            print("\none at a time (seconds per verify step):")
            sequential = median_seconds(
                {
                    "single: count + jti, one script": one(steps["single"]),
                    "cluster: counter script, then SET NX": one(steps["cluster"]),
                    "single: PING": one(pings["single"]),
                    "cluster: PING (one master)": one(pings["cluster"]),
                },
                repeats=args.repeats,
                seconds=args.seconds,
            )
            print_table(sequential, "single: count + jti, one script")
            print(f"\n{IN_FLIGHT} in flight on one event loop (per verify step):")
            concurrent = median_seconds(
                {
                    "single: count + jti, one script": many(steps["single"]),
                    "cluster: counter script, then SET NX": many(steps["cluster"]),
                },
                repeats=args.repeats,
                seconds=args.seconds,
            )
            print_table(
                {name: secs / IN_FLIGHT for name, secs in concurrent.items()},
                "single: count + jti, one script",
            )
        finally:
            loop.close()


if __name__ == "__main__":
    main()

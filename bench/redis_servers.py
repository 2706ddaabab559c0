"""Redis servers a benchmark starts for itself from the installed ``redis-server``: one
server, or a 3-master Redis Cluster, on free loopback ports in a directory it is given.

The benchmarks' own fixture (``bench`` imports nothing of ``tests``); the test suite's
counterpart, with kill and restart, is ``tests/redis_cluster.py``.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import redis

SLOTS = 16384


def _free_port() -> int:
    """A loopback port free now, with its cluster bus port (``port + 10000``) free too."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis server")


def _until(check: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_server(stack: ExitStack, directory: Path, *, appendfsync: str, cluster: bool) -> int:
    """Start one ``redis-server`` (stopped when ``stack`` closes); its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian package redis-server)")
    port = _free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--logfile", str(directory / "redis.log"), "--save", "", "--appendonly", "yes",
            "--appendfsync", appendfsync]  # fmt: skip
    if cluster:
        args += ["--cluster-enabled", "yes", "--cluster-config-file",
                 str(directory / "nodes.conf"), "--cluster-node-timeout", "1000"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    stack.callback(process.wait, 10)
    stack.callback(process.kill)
    client = redis.Redis(port=port)
    _until(client.ping, f"redis-server on port {port}")
    client.close()
    return port


def start_cluster(stack: ExitStack, directory: Path, *, appendfsync: str) -> list[str]:
    """Three masters, the slots split evenly, joined by hand; their URLs once ``ok``."""
    ports = [
        start_server(stack, directory / f"node-{n}", appendfsync=appendfsync, cluster=True)
        for n in range(3)
    ]
    clients = [redis.Redis(port=port) for port in ports]
    for index, client in enumerate(clients):
        low, high = index * SLOTS // 3, (index + 1) * SLOTS // 3 - 1
        client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
    for port in ports[1:]:
        clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)

    def ok() -> bool:
        return all(
            b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
            and b"cluster_known_nodes:3" in c.execute_command("CLUSTER", "INFO")
            for c in clients
        )

    _until(ok, "the Redis Cluster to be ok")
    for client in clients:
        client.close()
    return [f"redis://127.0.0.1:{port}/0" for port in ports]

"""Real Redis servers the tests start themselves from the installed ``redis-server``: a
3-master Redis Cluster, and private single servers a test may stop and start (never the
shared one on 6379).

Each server runs in its own directory on a free loopback port, with ``appendonly yes``
and ``appendfsync always``: a server killed with SIGKILL and started again on its port,
directory and ``nodes.conf`` comes back with every write it acknowledged (a replay
memory that forgot would accept replays). The cluster is built by hand (distinct config
epochs, ``CLUSTER ADDSLOTSRANGE``, ``CLUSTER MEET``), in well under a second, with
``cluster-require-full-coverage no`` so that while one master is down the others keep
answering for their slots, and ``cluster-node-timeout`` 1 s.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

SLOTS = 16384
NODE_TIMEOUT_MS = 1000


def redis_server_binary() -> str | None:
    """The installed ``redis-server`` (Debian's package ``redis-server``), if any."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process (thread) that started it
    ends, so a test run that dies leaves no server behind (Linux prctl PR_SET_PDEATHSIG)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken: Sequence[int] = ()) -> int:
    """A loopback port free now, and its cluster bus port (``port + 10000``) too."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        if port not in taken and _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis server")


def _wait(check: object, what: str, timeout: float = 10.0) -> None:
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


@dataclass
class RedisServer:
    """One ``redis-server`` process on ``port`` keeping its files in ``directory``."""

    binary: str
    port: int
    directory: Path
    cluster: bool = False
    appendfsync: str = "always"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start (or start again, with the files it left) and wait until it answers.

        Call it from a thread that outlives the server (the main thread): the server
        dies with the thread that started it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.directory / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage", "no",
            ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # only a prctl call, made ready beforehand
        )
        client = self.client()
        try:
            _wait(lambda: client.ping(), f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class LocalCluster:
    """A Redis Cluster of three masters (no replicas) on loopback."""

    masters: list[RedisServer]

    @classmethod
    def start(cls, binary: str, directory: Path, *, appendfsync: str = "always") -> LocalCluster:
        ports: list[int] = []
        for _ in range(3):
            ports.append(free_port(ports))
        masters = [
            RedisServer(binary, port, directory / f"node-{port}", True, appendfsync)
            for port in ports
        ]
        cluster = cls(masters)
        try:
            for server in masters:
                server.start()
            cluster._join()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.masters]

    def _join(self) -> None:
        clients = [server.client() for server in self.masters]
        try:
            share = SLOTS // len(clients)
            for index, client in enumerate(clients):
                low = index * share
                high = SLOTS - 1 if index == len(clients) - 1 else low + share - 1
                # Distinct epochs up front, so no epoch collision has to be resolved.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
            for server in self.masters[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", server.port)
            self.wait_ok(clients)
        finally:
            for client in clients:
                client.close()

    def wait_ok(self, clients: Sequence[redis.Redis] | None = None) -> None:
        """Until every master reports the cluster ``ok`` with all three known and up."""
        own = clients is None
        active = list(clients) if clients is not None else [s.client() for s in self.masters]

        def ok() -> bool:
            for client in active:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or "cluster_known_nodes:3" not in text:
                    return False
                nodes = client.execute_command("CLUSTER", "NODES")
                raw = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
                if "fail" in raw:  # "fail" or "fail?" flags on some node
                    return False
            return True

        try:
            _wait(ok, "the Redis Cluster to be ok")
        finally:
            if own:
                for client in active:
                    client.close()

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key under ``prefix`` on every master."""
        for server in self.masters:
            client = server.client()
            try:
                for key in client.scan_iter(match=prefix + "*"):
                    client.delete(key)
            finally:
                client.close()

    def stop(self) -> None:
        for server in self.masters:
            server.kill()

"""``cardsvc serve --workers 2``: two real worker processes behind one port.

One PostgreSQL schema and one Redis prefix (the fixture of test_activation_processes).
Which worker answers a connection is found from the operating system, not from the
server: each worker's socket inodes (``/proc/PID/fd``) against the kernel's TCP table
(``/proc/net/tcp``), so no endpoint is added for the test. With a connection held open
to each worker, a nonce from one is used at the other, a QR token verified at one is
refused at the other, and a loss report at one is seen by both within the documented
bound (``status_sync_interval_seconds``, 1 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.errors import ConfigurationError
from cardsvc.multiprocess import require_shared_stores
from cardsvc.settings import Settings
from tests.issuer.ecard_helpers import VERIFY_SCOPES, Phone, activate, active_holder
from tests.issuer.registry_helpers import bearer
from tests.issuer.test_activation_processes import (  # the shared-site fixture and helpers
    DEADLINE,
    Site,
    _cardsvc,
    site,  # noqa: F401 - a fixture
)
from tests.live import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SYNC_BOUND = 1.0  # status_sync_interval_seconds, the documented bound


@contextmanager
def workers_issuer(shared: Site, port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    log_path = shared.tmp / f"workers-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*_cardsvc(), "serve", "--port", str(port), "--workers", str(workers)],
            env=shared.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE
        while len(worker_pids(process.pid)) < workers or not _healthy(port):
            assert process.poll() is None, f"issuer exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"issuer did not start:\n{log_path.read_text()}"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def worker_pids(parent: int) -> set[int]:
    """The supervisor's children running uvicorn workers (multiprocessing spawn)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _server_side_inode(server_port: int, client_port: int) -> int | None:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return inode
    return None


class Conn:
    """One kept-alive HTTP connection, pinned to whichever worker accepted it."""

    def __init__(self, port: int) -> None:
        self.http = HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        self.http.connect()
        self.port = port
        self.client_port = self.http.sock.getsockname()[1]

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        sent = {"content-type": "application/json", **(headers or {})}
        self.http.request(method, path, body=data, headers=sent)
        answer = self.http.getresponse()
        raw = answer.read()
        return answer.status, json.loads(raw) if raw else None

    def text(self, path: str) -> str:
        self.http.request("GET", path)
        answer = self.http.getresponse()
        assert answer.status == 200, answer.status
        return answer.read().decode()

    def worker(self, pids: set[int]) -> int | None:
        inode = _server_side_inode(self.port, self.client_port)
        return next((pid for pid in pids if inode in _socket_inodes(pid)), None)


def one_conn_per_worker(port: int, pids: set[int]) -> dict[int, Conn]:
    """A connection held open to each worker (new connections until each has one)."""
    held: dict[int, Conn] = {}
    spare: list[Conn] = []
    deadline = time.monotonic() + DEADLINE
    while set(held) != pids:
        assert time.monotonic() < deadline, f"connections reached only workers {set(held)}"
        conn = Conn(port)
        status, _ = conn.call("GET", "/health")
        assert status == 200
        pid = conn.worker(pids)
        assert pid is not None, "no worker holds the connection"
        if pid in held:
            spare.append(conn)
        else:
            held[pid] = conn
    for conn in spare:
        conn.http.close()
    return held


def mint_at(shared: Site, nonce_from: Conn, mint_with: Conn, ecard_id: str, phone: Phone) -> str:
    status, doc = nonce_from.call("GET", "/v1/ecards/nonce")
    assert status == 200, doc
    path = f"/v1/ecards/{ecard_id}/tokens"
    proof = phone.proof(shared.services, None, "POST", path, nonce=doc["nonce"])  # type: ignore[arg-type]
    status, doc = mint_with.call("POST", path, {"purpose": "transport"}, {"DPoP": proof})
    assert status == 200, doc
    return str(doc["tokens"][0]["token"])


def test_two_workers_share_replay_nonces_and_status(site: Site) -> None:  # noqa: F811
    services = site.services
    client = TestClient(create_app(services.settings, services=services))
    holder = active_holder(client, services, birth_date=None)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    ecard_id = str(ecard["ecard_id"])
    partner = bearer(services, VERIFY_SCOPES, subject="partner-1")
    port = free_port()
    with workers_issuer(site, port, workers=2) as supervisor:
        pids = worker_pids(supervisor.pid)
        assert len(pids) == 2, pids
        held = one_conn_per_worker(port, pids)
        a, b = (held[pid] for pid in sorted(pids))

        # Both serve the one trust list (signed once, beside the key store).
        assert a.text("/v1/trust-list") == b.text("/v1/trust-list")

        # A nonce issued by one worker is accepted by the other, both ways.
        tokens = [mint_at(site, a, b, ecard_id, phone), mint_at(site, b, a, ecard_id, phone)]
        tokens += [mint_at(site, a, b, ecard_id, phone) for _ in range(2)]

        # A QR token verified at one worker is refused at the other: one Redis.
        def verify(conn: Conn, token: str) -> tuple[int, Any]:
            return conn.call("POST", "/v1/verify", {"token": token, "purpose": "transport"},
                             partner)  # fmt: skip

        status, doc = verify(a, tokens[0])
        assert status == 200 and doc["valid"] is True, doc
        status, doc = verify(b, tokens[0])
        assert status == 422 and doc["check"] == "replayed", doc
        status, doc = verify(b, tokens[1])
        assert status == 200 and doc["valid"] is True, doc
        status, doc = verify(a, tokens[1])
        assert status == 422 and doc["check"] == "replayed", doc

        # The holder reports the e-card lost at worker a; both refuse within the bound.
        path = f"/v1/ecards/{ecard_id}/loss-report"
        status, doc = a.call("GET", "/v1/ecards/nonce")
        proof = phone.proof(services, None, "POST", path, nonce=doc["nonce"])  # type: ignore[arg-type]
        status, doc = a.call("POST", path, {}, {"DPoP": proof})
        assert status == 200, doc
        reported = time.monotonic()
        status, doc = verify(a, tokens[2])  # the worker that took it: at once
        assert status == 422 and doc["check"] == "card-suspended", doc
        time.sleep(max(0.0, reported + SYNC_BOUND + 0.05 - time.monotonic()))
        status, doc = verify(b, tokens[3])
        assert status == 422 and doc["check"] == "card-suspended", doc
        assert worker_pids(supervisor.pid) == pids  # the same two workers throughout
        # Each worker bounds request heads (cardsvc.api.serving): 431, then closed.
        for conn in held.values():
            conn.http.sock.sendall(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 40_000)
            assert conn.http.sock.recv(64).startswith(b"HTTP/1.1 431")
            conn.http.close()
    # The workers log as one process does: JSON lines by route template, no token in them.
    lines = (site.tmp / f"workers-{port}.log").read_text().splitlines()
    verifies = [
        entry
        for entry in (json.loads(line) for line in lines if line.startswith("{"))
        if entry.get("route") == "/v1/verify"
    ]
    assert len(verifies) >= len(tokens), lines[-20:]
    assert not [line for line in lines if any(token in line for token in tokens)]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"redis_url": None}, "needs Redis"),
        ({"database_url": "sqlite:///x.db"}, "needs PostgreSQL"),
    ],
)
def test_more_than_one_worker_needs_redis_and_postgresql(
    changes: dict[str, Any], words: str
) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://h/db", redis_url="redis://127.0.0.1:6379/0"
    ).model_copy(update=changes)
    require_shared_stores(settings, workers=1)  # one worker: anything goes
    with pytest.raises(ConfigurationError, match=words):
        require_shared_stores(settings, workers=2)


def test_serve_refuses_two_workers_without_redis(site: Site) -> None:  # noqa: F811
    env = {k: v for k, v in site.env.items() if k != "CARDSVC_REDIS_URL"}
    done = subprocess.run(
        [*_cardsvc(), "serve", "--port", str(free_port()), "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "--workers 2 needs Redis" in done.stderr

"""The shared store failing mid-run, with real servers the tests start and kill: a master
of a Redis Cluster killed during a verify run, and a single Redis server stopped and
started again. While the store is away every answer is a typed 503 (problem+json,
``Retry-After``) or correct, never a replay accepted; once it is back, answers recover, and
what was recorded before the failure is still refused as a replay (the servers keep an
append-only file, fsynced on every write)."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.auth.tokens import issue_access_token
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.conftest import service_unavailable
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import assert_problem, registry_services
from tests.redis_cluster import LocalCluster, RedisServer, free_port, redis_server_binary

pytestmark = pytest.mark.redis

#: Verifying partners, so that their rate-limit counters spread over the masters.
PARTNERS = 9


def binary() -> str:
    found = redis_server_binary()
    if found is None:
        service_unavailable("redis-server is not installed (Debian package redis-server)")
    assert found is not None
    return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own: it kills one of its masters."""
    cluster = LocalCluster.start(binary(), tmp_path / "cluster")
    yield cluster
    cluster.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A single Redis server of this test's own (never the shared one): it stops it."""
    server = RedisServer(binary(), free_port(), tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite: the database plays no part in what fails here."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'cardsvc.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="test passphrase",  # type: ignore[arg-type]
        issuer="https://issuer.test",
    )


def services_on(settings: Settings, **redis: Any) -> Services:
    """The issuer's services built from settings naming the store, as a deployment's are
    (``Settings`` validates them: a cluster's node URLs, or one server's URL)."""
    prefix = f"test:{secrets.token_hex(6)}:"
    return registry_services(Settings(**{**settings.model_dump(), "redis_prefix": prefix, **redis}))


@dataclass
class Run:
    """A verify run through the real app: fresh tokens, replays, several partners."""

    services: Services
    client: TestClient = field(init=False)
    phone: Phone = field(default_factory=Phone)
    ecard_id: str = ""
    partners: list[dict[str, str]] = field(default_factory=list)
    turns: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        # Entered, so every request runs on one event loop with one asyncio client, as
        # in a server process (see RedisStore.client).
        self.client = TestClient(create_app(self.services.settings, services=self.services))
        self.client.__enter__()
        holder = active_holder(self.client, self.services, birth_date=None)
        self.ecard_id = str(activate(self.client, self.services, holder, self.phone)["ecard_id"])
        for n in range(PARTNERS):
            token = issue_access_token(
                self.services.keys,
                issuer=self.services.settings.issuer,
                subject=f"partner-{n}",
                kind="partner",
                scopes=frozenset({"verify"}),
                now=self.services.clock(),
                purposes=frozenset({"transport"}),
                rate_limit=10_000,
            )
            self.partners.append({"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def mint(self) -> Any:
        return mint(self.client, self.services, self.ecard_id, self.phone, "transport")

    def tokens(self, count: int) -> list[str]:
        out = []
        for _ in range(count):
            answer = self.mint()
            assert answer.status_code == 200, answer.json()
            out.append(str(answer.json()["tokens"][0]["token"]))
        return out

    def verify(self, token: str) -> Any:
        """Verify at the next partner in turn."""
        headers = self.partners[next(self.turns) % len(self.partners)]
        return self.client.post(
            "/v1/verify", json={"token": token, "purpose": "transport"}, headers=headers
        )


def is_unavailable(answer: Any) -> bool:
    """A typed 503: problem+json ``store-unavailable`` with ``Retry-After`` and no verdict."""
    if answer.status_code != 503:
        return False
    problem = assert_problem(answer, 503)
    assert problem["type"].endswith("/store-unavailable"), problem
    assert answer.headers["Retry-After"] == "1"
    assert "valid" not in problem and "claims" not in problem
    return True


def assert_valid(answer: Any) -> None:
    assert answer.status_code == 200, answer.json()
    assert answer.json()["valid"] is True


def assert_replayed(answer: Any) -> None:
    assert answer.status_code == 422, answer.json()
    assert answer.json()["check"] == "replayed"


def test_a_master_killed_during_a_verify_run_never_lets_a_replay_through(
    settings: Settings, cluster: LocalCluster
) -> None:
    services = services_on(settings, redis_cluster_nodes=tuple(cluster.urls))
    run = Run(services)
    try:
        before, during = run.tokens(12), run.tokens(45)
        used = before[:9]
        for token in used:
            assert_valid(run.verify(token))
        for token in used[:3]:
            assert_replayed(run.verify(token))

        cluster.masters[0].kill()  # SIGKILL: nothing is in flight, requests are sequential
        accepted, unavailable = [], []
        for i, token in enumerate(during):
            answer = run.verify(token)
            if is_unavailable(answer):
                unavailable.append(token)
            else:
                assert_valid(answer)
                accepted.append(token)
            if i % 5 == 0:  # a few replays among them: refused, or 503, never valid
                replay = run.verify(used[i % len(used)])
                if not is_unavailable(replay):
                    assert_replayed(replay)
        # The kill mattered (the dead master's slots answered 503), and the other two
        # masters kept answering for theirs (cluster-require-full-coverage no).
        assert unavailable, "no request touched the killed master"
        assert accepted, "no request was answered by the surviving masters"
        for token in accepted:
            replay = run.verify(token)
            if not is_unavailable(replay):
                assert_replayed(replay)

        # Back on its port with its nodes.conf and append-only file: it rejoins as the
        # master of its slots, with every use it had recorded.
        cluster.masters[0].start()
        cluster.wait_ok()
        for token in unavailable:  # answered 503: nothing was recorded, so valid now
            assert_valid(run.verify(token))
        for token in used + accepted + unavailable:
            assert_replayed(run.verify(token))
        for token in before[9:] + run.tokens(3):  # minting (device proofs) recovered too
            assert_valid(run.verify(token))
    finally:
        run.close()
        services.engine.dispose()


def test_a_master_killed_with_verifies_in_flight_accepts_each_token_at_most_once(
    settings: Settings, cluster: LocalCluster
) -> None:
    """Eight verifies in flight at every moment when the master dies. A command it had
    executed may lose its reply (answered 503 although the jti was recorded: that token
    is then refused as a replay, failing closed); none is ever accepted twice."""
    services = services_on(settings, redis_cluster_nodes=tuple(cluster.urls))
    run = Run(services)
    try:
        fresh = run.tokens(60)
        # Each token once, and every third request a replay of an earlier one.
        jobs = [job for i, t in enumerate(fresh) for job in ([t, fresh[i // 3]] if i % 3 else [t])]
        answers: list[tuple[str, Any]] = []
        done = threading.Event()

        def killer() -> None:
            while len(answers) < len(jobs) // 3:
                time.sleep(0.001)
            cluster.masters[0].kill()
            done.set()

        thread = threading.Thread(target=killer)
        thread.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            for token, answer in zip(jobs, pool.map(run.verify, jobs), strict=True):
                answers.append((token, answer))
        thread.join()
        assert done.is_set()
        unavailable = sum(is_unavailable(answer) for _, answer in answers)
        assert unavailable, "the kill touched no request"
        accepted: dict[str, int] = dict.fromkeys(fresh, 0)
        for token, answer in answers:
            if is_unavailable(answer):
                continue
            if answer.status_code == 200:
                assert_valid(answer)
                accepted[token] += 1
            else:
                assert_replayed(answer)

        cluster.masters[0].start()
        cluster.wait_ok()
        burnt = 0  # recorded, but the reply was lost: never accepted, refused from now on
        for token in fresh:
            answer = run.verify(token)
            if accepted[token]:
                assert_replayed(answer)
            elif answer.status_code == 200:
                assert_valid(answer)
                accepted[token] += 1
            else:
                assert_replayed(answer)
                burnt += 1
        assert max(accepted.values()) == 1  # no token accepted twice, over the whole run
        assert burnt <= 8, burnt  # at most the requests in flight at the kill
    finally:
        run.close()
        services.engine.dispose()


def test_a_single_redis_stopped_and_started_answers_503_then_recovers(
    settings: Settings, server: RedisServer
) -> None:
    services = services_on(settings, redis_url=server.url)
    run = Run(services)
    try:
        used, spare = run.tokens(4), run.tokens(4)
        for token in used:
            assert_valid(run.verify(token))

        server.kill()
        for token in spare + used:  # fresh and replayed alike: 503, never a verdict
            assert is_unavailable(run.verify(token))
        # A token request checks its device proof's one-time jti there too: 503.
        assert is_unavailable(run.mint())

        server.start()  # same port, same directory: its append-only file replayed
        for token in spare:  # nothing was recorded while it was away
            assert_valid(run.verify(token))
        for token in used + spare:
            assert_replayed(run.verify(token))
        assert_valid(run.verify(run.tokens(1)[0]))
    finally:
        run.close()
        services.engine.dispose()

"""Wallet code activation across two real issuer processes on one PostgreSQL and Redis.

Two ``cardsvc serve`` processes (uvicorn) share one PostgreSQL schema and one Redis key
prefix. Wrong codes fired at both at once must lock the code after exactly its allowed
attempts (the code row is taken with ``SELECT ... FOR UPDATE``), and the activation rate
limits, per ID number and per source address, must be one count across both processes.

Rate limits count in real 60-second windows here (other processes have no test clock):
each burst starts with at least 20 s left in its window, far more than it takes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cardsvc.api.app import create_app
from cardsvc.db.models import ActivationCode
from cardsvc.db.states import ActivationCodeState
from cardsvc.ratelimit import WINDOW_SECONDS
from cardsvc.registry.db import read_session
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.issuer.ecard_helpers import Phone, activation_code, active_holder
from tests.issuer.registry_helpers import registry_services, unique_citizen_id
from tests.live import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

DEADLINE = 30.0  # seconds any one wait may take before the test fails
PASSPHRASE = "two processes test"
WRONG = "AAAA-AAAA-AAAA"
PER_PROCESS = 20


def _cardsvc() -> list[str]:
    script = Path(sys.executable).with_name("cardsvc")
    found = str(script) if script.exists() else shutil.which("cardsvc")
    assert found, "the cardsvc console script is not installed"
    return [found]


@dataclass
class Site:
    """The shared database and Redis prefix, seeded from this process."""

    services: Services
    env: dict[str, str]
    tmp: Path


@pytest.fixture
def site(
    pg_schema: str, redis_client: tuple[object, str], tmp_path: Path
) -> Iterator[Site]:
    _, prefix = redis_client
    database_url = f"{POSTGRES_URL}?options=-csearch_path%3D{pg_schema}"
    settings = Settings(
        database_url=database_url,
        key_dir=tmp_path / "keys",
        key_passphrase=PASSPHRASE,  # type: ignore[arg-type]
        issuer="https://issuer.test",
        redis_url=REDIS_URL,
        redis_prefix=prefix,
    )
    services = registry_services(settings)  # migrated, keys made: the servers only serve
    env = {
        **os.environ,
        "CARDSVC_DATABASE_URL": database_url,
        "CARDSVC_KEY_DIR": str(tmp_path / "keys"),
        "CARDSVC_KEY_PASSPHRASE": PASSPHRASE,
        "CARDSVC_ISSUER": "https://issuer.test",
        "CARDSVC_REDIS_URL": REDIS_URL,
        "CARDSVC_REDIS_PREFIX": prefix,
    }
    try:
        yield Site(services=services, env=env, tmp=tmp_path)
    finally:
        services.engine.dispose()


@contextmanager
def _issuer(site: Site, port: int, limits: dict[str, int]) -> Iterator[str]:
    env = site.env | {f"CARDSVC_RATE_LIMITS__{k.upper()}": str(v) for k, v in limits.items()}
    log_path = site.tmp / f"issuer-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*_cardsvc(), "serve", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert process.poll() is None, f"issuer exited:\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"issuer did not start:\n{log_path.read_text()}"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def two_issuers(site: Site, limits: dict[str, int]) -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        bases = [stack.enter_context(_issuer(site, free_port(), limits)) for _ in range(2)]
        yield bases[0], bases[1]


def _fresh_window() -> None:
    """Wait, if need be, so that a burst starts with at least 20 s left in its window."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < 20:
        time.sleep(left + 0.2)


def fire(bases: tuple[str, str], bodies: list[list[dict[str, Any]]]) -> list[tuple[str, Any]]:
    """Every body at once: ``bodies[i]`` to ``bases[i]``, one thread per request, all
    released together. Answers (the base, the JSON problem or body) in no order."""
    jobs = [(base, body) for base, group in zip(bases, bodies, strict=True) for body in group]
    start = threading.Barrier(len(jobs))

    def send(job: tuple[str, dict[str, Any]]) -> tuple[str, int, Any]:
        base, body = job
        with httpx.Client(base_url=base, timeout=DEADLINE) as client:
            start.wait(DEADLINE)
            answer = client.post("/v1/ecards/activations", json=body)
            return base, answer.status_code, answer.json()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return [(b, (status, doc)) for b, status, doc in pool.map(send, jobs)]


def _holder_with_code(site: Site) -> tuple[str, str]:
    client = TestClient(create_app(site.services.settings, services=site.services))
    holder = active_holder(client, site.services, birth_date=None)
    return str(holder.person["citizen_id"]), activation_code(client, site.services, holder)


def test_wrong_codes_at_two_processes_lock_the_code_after_exactly_its_attempts(
    site: Site,
) -> None:
    citizen_id, code = _holder_with_code(site)
    attempts = site.services.settings.ecard_activation_attempts
    limits = {"activation_per_address": 1000, "activation_per_citizen_id": 1000}
    with two_issuers(site, limits) as bases:
        wrong = {"citizen_id": citizen_id, "code": WRONG, "device_jwk": Phone().jwk}
        answers = fire(bases, [[wrong] * PER_PROCESS, [wrong] * PER_PROCESS])
        assert {base for base, _ in answers} == set(bases)
        outcomes = Counter((status, doc.get("reason")) for _, (status, doc) in answers)
        # The tries before the last answer wrong-code, each with one fewer left; the
        # last wrong try locks the code, and every later one is told it is locked.
        assert outcomes == {
            (422, "wrong-code"): attempts - 1,
            (403, "locked"): 2 * PER_PROCESS - (attempts - 1),
        }, outcomes
        left = sorted(doc["attempts_left"] for _, (s, doc) in answers if s == 422)
        assert left == list(range(1, attempts))
        assert all(doc["type"].endswith("/activation-locked")
                   for _, (s, doc) in answers if s == 403)  # fmt: skip
        # The right code afterwards, at either process: refused, locked.
        for base in bases:
            right = {"citizen_id": citizen_id, "code": code, "device_jwk": Phone().jwk}
            answer = httpx.post(f"{base}/v1/ecards/activations", json=right, timeout=DEADLINE)
            assert answer.status_code == 403, answer.json()
            assert answer.json()["reason"] == "locked"
    with read_session(site.services.engine) as session:
        row = session.scalars(select(ActivationCode)).one()
        assert (row.state, row.attempts) == (ActivationCodeState.LOCKED, attempts)


def test_activation_limits_are_one_count_across_two_processes(site: Site) -> None:
    citizen_id, _ = _holder_with_code(site)
    per_id, per_address = 10, 30
    limits = {"activation_per_citizen_id": per_id, "activation_per_address": per_address}
    with two_issuers(site, limits) as bases:
        _fresh_window()
        # Per ID number: 2 x 10 requests naming one ID, at once, at both processes.
        wrong = {"citizen_id": citizen_id, "code": WRONG, "device_jwk": Phone().jwk}
        answers = fire(bases, [[wrong] * 10, [wrong] * 10])
        limited = [doc for _, (status, doc) in answers if status == 429]
        assert len(limited) == 20 - per_id, Counter(s for _, (s, _d) in answers)
        assert {d["counted_per"] for d in limited} == {"citizen ID"}
        assert all(d["limit_per_minute"] == per_id for d in limited)
        admitted = Counter((s, d.get("reason")) for _, (s, d) in answers if s != 429)
        assert sum(admitted.values()) == per_id and set(admitted) <= {
            (422, "wrong-code"),
            (403, "locked"),
        }, admitted
        # Per address: 20 counted above; 2 x 10 more, each naming another unknown ID.
        others = [
            [{"citizen_id": unique_citizen_id(), "code": WRONG, "device_jwk": Phone().jwk}
             for _ in range(10)]
            for _ in bases
        ]  # fmt: skip
        answers = fire(bases, others)
        statuses = Counter(status for _, (status, _doc) in answers)
        assert statuses == {422: per_address - 20, 429: 40 - per_address}, statuses
        limited = [doc for _, (status, doc) in answers if status == 429]
        assert {d["counted_per"] for d in limited} == {"address"}
        assert all(d["reason"] == "no-code" for _, (s, d) in answers if s == 422)

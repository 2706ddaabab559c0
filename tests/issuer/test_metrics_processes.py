"""Two real ``cardsvc serve`` processes sharing PROMETHEUS_MULTIPROC_DIR: either one's
/metrics counts the requests both served; a stopped worker's live gauges leave the sum.
Their stderr is JSON lines with request ids."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cardsvc.settings import Settings
from tests.issuer.registry_helpers import registry_services
from tests.issuer.test_activation_processes import _cardsvc
from tests.issuer.test_metrics import samples, value
from tests.live import free_port

PASSPHRASE = "metrics processes"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    database_url = f"sqlite:///{tmp_path / 'cardsvc.db'}"
    settings = Settings(
        database_url=database_url,
        key_dir=tmp_path / "keys",
        key_passphrase=PASSPHRASE,  # type: ignore[arg-type]
    )
    services = registry_services(settings)  # migrated, keys made
    services.engine.dispose()
    shared = tmp_path / "prometheus"
    shared.mkdir()
    yield {
        **os.environ,
        "CARDSVC_DATABASE_URL": database_url,
        "CARDSVC_KEY_DIR": str(tmp_path / "keys"),
        "CARDSVC_KEY_PASSPHRASE": PASSPHRASE,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback)
        return answer.status, answer.read(), dict(answer.headers)


@contextmanager
def issuer(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*_cardsvc(), "serve", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if get(f"{base}/health/live")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def live_count(base: str) -> float:
    figures = samples(get(f"{base}/metrics")[1].decode())
    return value(figures, "cardsvc_http_request_duration_seconds_count",
                 method="GET", route="/health/live", status="200")  # fmt: skip


def test_two_workers_one_sum(env: dict[str, str], tmp_path: Path) -> None:
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    with issuer(env, log_a) as (a, _), issuer(env, log_b) as (b, process_b):
        before = live_count(a)  # the start-up polls of both
        for _ in range(3):
            get(f"{a}/health/live")
        for _ in range(5):
            status, _body, headers = get(f"{b}/health/live")
            assert status == 200 and headers["x-request-id"]
        assert live_count(a) == live_count(b) == before + 8
        figures = samples(get(f"{a}/metrics")[1].decode())
        # The figures read at scrape time come along in multi-process mode too.
        assert any(name == "cardsvc_key_age_days" for name, _labels in figures)
        assert ("cardsvc_sync_journal_backlog", ()) in figures
        size = value(figures, "cardsvc_db_pool_size")
        assert size > 0 and size % 2 == 0  # two pools of one size
        stop(process_b)
        figures = samples(get(f"{a}/metrics")[1].decode())
        assert value(figures, "cardsvc_db_pool_size") == size / 2  # b is gone
        assert live_count(a) == before + 8  # what b counted stays counted
    # The servers' logs: JSON lines; each request's line has its id and route template.
    records = [json.loads(line) for line in log_b.read_text().splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "cardsvc.access"]
    assert {r["route"] for r in access} == {"/health/live", "/metrics"}
    assert sum(r["route"] == "/health/live" and r["status"] == 200 for r in access) >= 5
    assert all(len(r["request_id"]) == 32 for r in access)

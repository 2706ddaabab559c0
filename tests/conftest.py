"""Shared fixtures: real PostgreSQL and Redis, isolated per test; CI refuses skips.

Service locations come from the environment, with the defaults this project's machines
(and CI) provide:

- ``CARDSVC_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://root@127.0.0.1:5432/test``)
- ``CARDSVC_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``)

Each PostgreSQL test gets its own schema, dropped afterwards; each Redis test gets its
own key prefix, whose keys are deleted afterwards. Outside CI a missing service skips the
test with the reason; with ``CI=true`` it fails, and the session fails if any test
carrying a ``postgres``, ``redis``, ``pcscd``, ``browser`` or ``softhsm`` marker was skipped anyway.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.softhsm import FaultyModule, SoftHsm, Token, build_shim
from tests.softhsm import start as start_softhsm

SERVICE_MARKERS = ("postgres", "redis", "pcscd", "browser", "softhsm")
IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get(
    "CARDSVC_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CARDSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: The standards' test vectors, copied from ../shared/vectors (see tests/vectors/README.md).
STANDARD_VECTORS = Path(__file__).resolve().parent / "vectors"

# Bounded examples so the suite stays well inside CI's budget; `HYPOTHESIS_PROFILE=fuzz`
# runs far more outside the test command.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))


def service_unavailable(reason: str) -> None:
    """Skip (development) or fail (CI) a test whose real service is not there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: service tests must run, not skip)")
    pytest.skip(reason)


_skipped_service_tests: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and any(item.get_closest_marker(m) for m in SERVICE_MARKERS):
        _skipped_service_tests.append(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped_service_tests:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_service_tests:
        verdict = "FAILED: CI=true forbids this" if IN_CI else "set CI=true to make this fail"
        terminalreporter.write_line(
            f"{len(_skipped_service_tests)} service test(s) skipped ({verdict}):", red=IN_CI
        )
        for nodeid in _skipped_service_tests:
            terminalreporter.write_line(f"  {nodeid}")


@pytest.fixture(scope="session")
def standard_vectors() -> Path:
    if not STANDARD_VECTORS.is_dir():
        pytest.fail(f"standard test vectors not found at {STANDARD_VECTORS}")
    return STANDARD_VECTORS


@pytest.fixture
def postgres_url() -> str:
    return POSTGRES_URL


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    import sqlalchemy

    from cardsvc.db.engine import make_engine

    admin = make_engine(postgres_url)
    schema = f"t_{secrets.token_hex(6)}"
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable(f"PostgreSQL not reachable at {postgres_url}: {exc.orig}")
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Run a test once on SQLite and once on PostgreSQL (own schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cardsvc.db'}"
        return
    schema = request.getfixturevalue("pg_schema")
    # The schema travels in the URL's options so every engine made from it is isolated.
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def redis_client() -> Iterator[tuple[object, str]]:
    """A real Redis client and a key prefix owned by this test (keys deleted after)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis not reachable at {REDIS_URL}: {exc}")
    prefix = f"test:{secrets.token_hex(6)}:"
    try:
        yield client, prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """The run's SoftHSM2, with its own token directory (``SOFTHSM2_CONF`` set for it)."""
    hsm = start_softhsm(tmp_path_factory.mktemp("softhsm"))
    if isinstance(hsm, str):
        service_unavailable(hsm)
    assert isinstance(hsm, SoftHsm)
    return hsm


@pytest.fixture
def hsm_token(softhsm: SoftHsm) -> Token:
    """A fresh SoftHSM2 token of this test's own."""
    return softhsm.new_token()


@pytest.fixture(scope="session")
def faulty_module(softhsm: SoftHsm, tmp_path_factory: pytest.TempPathFactory) -> FaultyModule:
    """A PKCS#11 module in front of SoftHSM2 that fails on demand (tests/p11shim.c)."""
    shim = build_shim(softhsm, tmp_path_factory.mktemp("p11shim"))
    if isinstance(shim, str):
        service_unavailable(shim)
    assert isinstance(shim, FaultyModule)
    return shim

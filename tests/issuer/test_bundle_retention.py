"""Retention of verifier bundle versions and their stored shard lists (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cardsvc.api.app import create_app
from cardsvc.cli.main import app as cli
from cardsvc.core.bundle import Bundle
from cardsvc.core.statuslist import Status
from cardsvc.core.verifier import OfflineVerifier
from cardsvc.db.models import VerifierBundleRow, VerifierBundleShardRow
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from tests.issuer.registry_helpers import enrol, issue, registry_services

WINDOW = timedelta(hours=10)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    # The default retention (7 days): serving prunes nothing these tests mint.
    services = registry_services(settings)
    yield services
    services.engine.dispose()


@pytest.fixture
def serving(settings: Settings) -> Iterator[Services]:
    # Retention the route applies: versions minted 20 h back fall outside.
    services = registry_services(settings.model_copy(update={"bundle_retention_hours": 10}))
    yield services
    services.engine.dispose()


def _stored(services: Services) -> tuple[dict[int, set[str]], set[str]]:
    """Each stored version's shard list hashes, and the stored lists' hashes."""
    with Session(services.engine) as session:
        versions = {
            row.version: set(json.loads(row.contents)["shards"].values())
            for row in session.scalars(select(VerifierBundleRow))
        }
        lists = set(session.scalars(select(VerifierBundleShardRow.hash)))
    return versions, lists


class History:
    """Bundles minted at chosen times through the API, each kept as a full token."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.client = TestClient(create_app(services.settings, services=services))
        issue(self.client, services, enrol(self.client, services)["id"])
        self.shard = services.status.shard_ids()[0]
        self.tokens: dict[int, str] = {}

    def mint(
        self, at: datetime, *, index: int | None = None, status: Status = Status.INVALID
    ) -> int:
        """Change entry ``index`` of the shard (none: no change), then fetch at ``at``."""
        self.services.clock = lambda: at
        if index is not None:
            self.services.status._shards[self.shard].set_status(index, status)
        answer = self.client.get("/v1/bundles/latest")
        assert answer.status_code == 200, answer.text
        version = int(answer.headers["bundle-version"])
        self.tokens[version] = answer.text
        return version

    def holding(self, version: int, at: datetime) -> OfflineVerifier:
        """A gate's verifier that accepted ``version`` at ``at`` (when it was current)."""
        verifier = OfflineVerifier(self.services.keys.root_key())
        verifier.update(self.tokens[version], now=at)
        return verifier


def test_prune_removes_versions_and_lists_outside_the_window(services: Services) -> None:
    now = utcnow()
    earlier = now - timedelta(hours=20)
    history = History(services)
    v1 = history.mint(earlier)  # shard list A
    v2 = history.mint(earlier, index=7)  # B
    v3 = history.mint(now, index=8)  # C
    v4 = history.mint(now, index=8, status=Status.VALID)  # B again
    assert v1 < v2 < v3 < v4
    versions, lists = _stored(services)
    (a,), (b,), (c,) = versions[v1], versions[v2], versions[v3]
    assert versions[v4] == {b} and len({a, b, c}) == 3 and lists == {a, b, c}

    result = services.bundles.prune(now=now, keep=WINDOW)

    versions, lists = _stored(services)
    assert set(versions) == {v3, v4}
    assert lists == {b, c}  # B stays: a kept version names it too
    assert (result.versions_removed, result.lists_removed) == (2, 1)
    assert (result.versions_kept, result.lists_kept, result.oldest_kept) == (2, 2, v3)

    # A verifier holding a pruned version gets a full bundle it accepts, delta or not.
    uri = services.status.uri(history.shard)
    for query in (f"since={v1}", f"since={v2}&delta=entries"):
        answer = history.client.get(f"/v1/bundles/latest?{query}")
        assert answer.status_code == 200, answer.text
        held = history.holding(v1 if query.startswith(f"since={v1}") else v2, earlier)
        bundle: Bundle = held.update(answer.text, now=now)
        assert (bundle.version, bundle.base) == (v4, None)
        assert bundle.status_lists[uri].status_list.get(8) == Status.VALID
    # A kept version still gets its delta, patched from the list stored for it.
    answer = history.client.get(f"/v1/bundles/latest?since={v3}&delta=entries")
    delta = history.holding(v3, now).update(answer.text, now=now)
    assert (delta.version, delta.base, delta.patched) == (v4, v3, frozenset({uri}))
    assert delta.status_lists[uri].status_list.get(8) == Status.VALID

    again = services.bundles.prune(now=now, keep=WINDOW)
    assert (again.versions_removed, again.lists_removed) == (0, 0)
    assert _stored(services) == (versions, lists)


def test_the_newest_version_always_stays(services: Services) -> None:
    now = utcnow()
    history = History(services)
    history.mint(now - timedelta(hours=20))
    newest = history.mint(now - timedelta(hours=20), index=7)
    result = services.bundles.prune(now=now + timedelta(days=30), keep=WINDOW)
    versions, lists = _stored(services)
    assert set(versions) == {newest} and lists == versions[newest]
    assert (result.versions_removed, result.versions_kept, result.oldest_kept) == (1, 1, newest)
    # Numbering continues above it: a verifier's version never means two contents.
    assert history.mint(now, index=9) > newest


def test_serving_prunes_at_most_once_per_interval(serving: Services) -> None:
    services = serving
    now = utcnow()
    earlier = now - timedelta(hours=20)
    history = History(services)
    v1 = history.mint(earlier)  # the first request prunes: nothing is old yet
    v2 = history.mint(earlier, index=7)
    assert set(_stored(services)[0]) == {v1, v2}
    v3 = history.mint(now, index=8)  # an interval later: versions 20 h old go
    versions, lists = _stored(services)
    assert set(versions) == {v3} and lists == versions[v3]
    assert services.bundles.prune_due(now=now, keep=WINDOW) is None  # not due again yet

    answer = history.client.get(f"/v1/bundles/latest?since={v1}&delta=entries")
    bundle = history.holding(v1, earlier).update(answer.text, now=now)
    assert (bundle.version, bundle.base) == (v3, None)


def test_cli_prunes_and_says_what_it_removed(services: Services, settings: Settings) -> None:
    now = utcnow()
    history = History(services)
    v1 = history.mint(now - timedelta(hours=20))
    v2 = history.mint(now, index=7)
    assert set(_stored(services)[0]) == {v1, v2}
    assert settings.key_passphrase is not None
    env = {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": settings.key_passphrase.get_secret_value(),
        "CARDSVC_ISSUER": settings.issuer,
    }
    runner = CliRunner()

    default = runner.invoke(cli, ["bundles", "prune"], env=env)  # 168 h: nothing is that old
    assert default.exit_code == 0, default.output
    assert "removed 0 bundle version(s) issued more than 168 h ago" in default.output

    pruned = runner.invoke(cli, ["bundles", "prune", "--keep-hours", "10"], env=env)
    assert pruned.exit_code == 0, pruned.output
    assert "removed 1 bundle version(s) issued more than 10 h ago and 1 stored" in pruned.output
    assert f"kept 1 version(s) (oldest {v2};" in pruned.output
    assert set(_stored(services)[0]) == {v2}

    again = runner.invoke(cli, ["bundles", "prune", "--keep-hours", "10"], env=env)
    assert again.exit_code == 0, again.output
    assert "removed 0 bundle version(s)" in again.output
    assert "and 0 stored shard list(s)" in again.output

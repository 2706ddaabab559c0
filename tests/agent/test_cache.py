"""The agent's offline cache on the verifier bundle: what it holds, how current, and what
it refuses (no card reader needed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.fetch import RefreshOutcome
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import LocalSigner
from cardsvc.core.statuslist import Status
from reader_agent.cache import AgentCache, CacheError
from reader_agent.check import DEFAULT_MAX_STATUS_AGE, ONLINE_MAX_STATUS_AGE
from reader_agent.counter import refreshed_status_limit
from reader_agent.issuer import IssuerClient
from tests.agent.world import STATUS_URI, World
from tests.standin import Answer, stand_in

REF = StatusReference(idx=7, uri=STATUS_URI)


def test_status_comes_from_the_bundle_with_its_signed_time(tmp_path: Path) -> None:
    world = World()
    cache = world.cache(tmp_path, statuses={7: Status.SUSPENDED})
    entry = cache.status(REF, now=world.now + timedelta(minutes=5))
    assert entry.status is Status.SUSPENDED
    assert not entry.confirmed and entry.as_of == world.now
    assert entry.age(world.now + timedelta(minutes=5)) == timedelta(minutes=5)
    assert cache.status(StatusReference(idx=8, uri=STATUS_URI), now=world.now).status is (
        Status.VALID
    )


def test_what_the_bundle_does_not_hold_is_a_typed_error(tmp_path: Path) -> None:
    world = World()
    cache = world.cache(tmp_path)
    with pytest.raises(CacheError) as missing:
        cache.status(StatusReference(idx=1, uri="https://issuer.test/v1/status-lists/9"),
                     now=world.now)  # fmt: skip
    assert missing.value.check == "no-status-list"
    with pytest.raises(CacheError) as beyond:
        cache.status(StatusReference(idx=10**6, uri=STATUS_URI), now=world.now)
    assert beyond.value.check == "index"
    with pytest.raises(CacheError) as expired:
        cache.status(REF, now=world.now + timedelta(days=8))
    assert expired.value.check == "expired"
    with pytest.raises(CacheError) as old_trust:
        cache.trust_list(now=world.now + timedelta(days=8))
    assert old_trust.value.check == "expired"


def test_no_root_and_no_bundle_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(CacheError) as no_root:
        AgentCache(tmp_path).status(REF, now=World().now)
    assert no_root.value.check == "no-root" and "cache update" in no_root.value.detail
    world = World()
    cache = AgentCache(tmp_path)
    cache.pin_root(world.root.verifying_key())
    with pytest.raises(CacheError) as no_bundle:
        cache.trust_list(now=world.now)
    assert no_bundle.value.check == "no-bundle"


def test_a_bundle_from_another_root_or_rolled_back_is_refused(tmp_path: Path) -> None:
    world = World()
    cache = world.cache(tmp_path)
    cache.install(world.bundle(version=3), now=world.now)
    with pytest.raises(CacheError) as rolled_back:
        cache.install(world.bundle(version=2), now=world.now)
    assert rolled_back.value.check == "bundle-rollback"
    stranger = World(now=world.now)
    with pytest.raises(CacheError) as foreign:
        cache.install(stranger.bundle(version=4), now=world.now)
    assert foreign.value.check == "key-unknown"
    with pytest.raises(CacheError) as other_root:
        cache.pin_root(LocalSigner(ec.generate_private_key(ec.SECP256R1())).verifying_key())
    assert other_root.value.check == "root-pinned"
    # The rollback survives a restart: a new process refuses version 2 too.
    again = AgentCache(tmp_path, clock=lambda: world.now)
    assert again.bundle().version == 3
    with pytest.raises(CacheError):
        again.install(world.bundle(version=2), now=world.now)


def test_a_bundle_tampered_with_on_disk_is_not_trusted(tmp_path: Path) -> None:
    world = World()
    world.cache(tmp_path, statuses={7: Status.INVALID})
    for path in (tmp_path / "bundle").iterdir():
        if path.suffix == ".json" and "fetch" not in path.name:
            text = path.read_text()
            # Turn the revoked entry's shard into something else: the signature breaks.
            path.write_text(text.replace('"token": "ey', '"token": "eyX'))
    reopened = AgentCache(tmp_path, clock=lambda: world.now)
    with pytest.raises(CacheError) as held:
        reopened.status(REF, now=world.now)
    assert held.value.check == "damaged" and "cache update" in held.value.detail
    # `cache update` starts afresh from the pinned root; the damaged chain is kept aside.
    reopened.install(world.bundle({7: Status.INVALID}, version=2), now=world.now)
    assert reopened.status(REF, now=world.now).status is Status.INVALID
    assert any(p.name.endswith(".damaged") for p in (tmp_path / "bundle").iterdir())


@pytest.fixture
def bundle_server() -> Iterator[tuple[list[str], str]]:
    """Serves ``bodies[-1]``, and 304 for its ETag (which counts the bodies)."""
    bodies: list[str] = []

    def reply(_query: dict[str, list[str]], if_none_match: str | None) -> Answer:
        etag = f'"{len(bodies)}"'
        if if_none_match == etag:
            return Answer(status=304, headers={"ETag": etag})
        return Answer(body=bodies[-1].encode(), headers={"ETag": etag})

    with stand_in(reply) as http:
        yield bodies, http.base


def test_a_refresh_the_issuer_answers_makes_status_current(
    tmp_path: Path, bundle_server: tuple[list[str], str]
) -> None:
    bodies, base = bundle_server
    world = World()
    hour_old = world.bundle(version=1, age=timedelta(hours=1))
    bodies.append(hour_old)
    clock = [world.now]
    cache = AgentCache(tmp_path, clock=lambda: clock[0])
    cache.pin_root(world.root.verifying_key())
    first = cache.refresh(f"{base}/v1/bundles/latest", now=world.now)
    assert first.outcome is RefreshOutcome.UPDATED
    entry = cache.status(REF, now=world.now)
    # Signed an hour ago, but the issuer said just now that it is still current.
    assert entry.confirmed and entry.as_of == world.now and entry.age(world.now) == timedelta(0)

    clock[0] = world.now + timedelta(seconds=20)
    unchanged = cache.refresh(f"{base}/v1/bundles/latest", now=clock[0])
    assert unchanged.outcome is RefreshOutcome.UNCHANGED and unchanged.downloaded == 0
    assert cache.status(REF, now=clock[0]).as_of == clock[0]

    # A new process reads when it was last confirmed from the memo.
    reopened = AgentCache(tmp_path, clock=lambda: clock[0])
    assert reopened.status(REF, now=clock[0]).confirmed


def test_online_checks_get_30_seconds_and_offline_the_cache_limit(
    tmp_path: Path, bundle_server: tuple[list[str], str]
) -> None:
    bodies, base = bundle_server
    world = World()
    bodies.append(world.bundle(version=1))
    cache = AgentCache(tmp_path, clock=lambda: world.now)
    cache.pin_root(world.root.verifying_key())
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    online = IssuerClient(base, client_id="term-1", signer=signer)
    assert refreshed_status_limit(cache, online, world.now) == ONLINE_MAX_STATUS_AGE
    # An answer that does not verify is still the issuer answering: status must be new.
    bodies.append("not.a.bundle")
    assert refreshed_status_limit(cache, online, world.now) == ONLINE_MAX_STATUS_AGE
    offline = IssuerClient("http://127.0.0.1:9", client_id="term-1", signer=signer)
    assert refreshed_status_limit(cache, offline, world.now) == DEFAULT_MAX_STATUS_AGE

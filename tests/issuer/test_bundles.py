"""GET /v1/bundles/latest: a verifiable bundle, versions monotonic, deltas, ETag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from cardsvc.api.app import create_app
from cardsvc.core.bundle import verify_bundle
from cardsvc.core.keys import b64url_decode
from cardsvc.core.statuslist import Status
from cardsvc.db.models import VerifierBundleShardRow
from cardsvc.services import Services
from tests.issuer.registry_helpers import enrol, issue, registry_services


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


def test_bundle_full_delta_and_restart(services: Services, settings: Any) -> None:
    client = TestClient(create_app(settings, services=services))
    issue(client, services, enrol(client, services)["id"])
    root = services.keys.root_key()
    now = services.clock()
    leeway = timedelta(seconds=30)

    first = client.get("/v1/bundles/latest")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/verifier-bundle+jwt")
    assert "public" in first.headers["cache-control"]
    full = verify_bundle(first.text, root=root, now=now, leeway=leeway)
    assert full.base is None and full.status_lists
    again = client.get("/v1/bundles/latest", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304

    # a status change (as a revocation applies it): the content changes, a new version
    shard = services.status.shard_ids()[0]
    services.status._shards[shard].set_status(7, Status.INVALID)
    delta_answer = client.get(f"/v1/bundles/latest?since={full.version}")
    delta = verify_bundle(delta_answer.text, root=root, now=now, leeway=leeway, previous=full)
    assert delta.version > full.version
    assert delta.base == full.version
    # Holding the current version: nothing new, whatever ETag the verifier kept.
    current = client.get(f"/v1/bundles/latest?since={delta.version}",
                         headers={"If-None-Match": delta_answer.headers["etag"]})  # fmt: skip
    assert current.status_code == 304, current.text
    assert current.headers["bundle-version"] == str(delta.version)
    assert client.get(f"/v1/bundles/latest?since={delta.version}").status_code == 304
    # A version this issuer never published: the full bundle, not "not modified".
    ahead = client.get(f"/v1/bundles/latest?since={delta.version + 100}")
    assert ahead.status_code == 200
    assert verify_bundle(ahead.text, root=root, now=now, leeway=leeway).base is None

    restarted = registry_services(settings)  # a new process: versions continue from the DB
    try:
        answer = TestClient(create_app(settings, services=restarted)).get("/v1/bundles/latest")
        later = verify_bundle(answer.text, root=root, now=now, leeway=leeway, previous=delta)
        assert later.version >= delta.version
    finally:
        restarted.engine.dispose()


def test_bundle_with_chosen_shards(services: Services, settings: Any) -> None:
    client = TestClient(create_app(settings, services=services))
    issue(client, services, enrol(client, services)["id"])
    answer = client.get("/v1/bundles/latest?shard=999999")
    assert answer.status_code in (200, 404), answer.text


def _claims(token: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return parsed


def test_entry_deltas_carry_the_changed_entries(services: Services, settings: Any) -> None:
    client = TestClient(create_app(settings, services=services))
    issue(client, services, enrol(client, services)["id"])
    root = services.keys.root_key()
    now = services.clock()
    leeway = timedelta(seconds=30)
    full = verify_bundle(client.get("/v1/bundles/latest").text, root=root, now=now, leeway=leeway)
    shard = services.status.shard_ids()[0]
    uri = services.status.uri(shard)
    services.status._shards[shard].set_status(7, Status.SUSPENDED)

    # Verifiers that did not ask get the shard whole, as before.
    whole = client.get(f"/v1/bundles/latest?since={full.version}")
    assert set(_claims(whole.text)["status_lists"]) == {uri}
    assert "status_patches" not in _claims(whole.text)
    answer = client.get(f"/v1/bundles/latest?since={full.version}&delta=entries")
    assert answer.status_code == 200, answer.text
    assert answer.headers["etag"] != whole.headers["etag"]
    sent = _claims(answer.text)
    assert sent["status_lists"] == {} and set(sent["status_patches"]) == {uri}
    assert len(answer.text) < len(whole.text)
    delta = verify_bundle(answer.text, root=root, now=now, leeway=leeway, previous=full)
    assert delta.patched == frozenset({uri})
    assert delta.status_lists[uri].status_list.get(7) == Status.SUSPENDED
    # Exactly the list the issuer publishes at that version.
    published = verify_bundle(whole.text, root=root, now=now, leeway=leeway, previous=full)
    assert delta.status_lists[uri].status_list.to_bytes() == (
        published.status_lists[uri].status_list.to_bytes()
    )
    assert client.get("/v1/bundles/latest?since=1&delta=nonsense").status_code == 422

    # Another process diffs against the list stored for the version, not its memory.
    restarted = registry_services(settings)
    try:
        restarted.status.status_of(shard, 0)  # loads the shard; the change is memory-only
        restarted.status._shards[shard].set_status(7, Status.SUSPENDED)
        again = TestClient(create_app(settings, services=restarted)).get(
            f"/v1/bundles/latest?since={full.version}&delta=entries"
        )
        assert set(_claims(again.text).get("status_patches", {})) == {uri}
        verify_bundle(again.text, root=root, now=now, leeway=leeway, previous=full)
    finally:
        restarted.engine.dispose()


def test_without_a_stored_list_the_shard_goes_whole(services: Services, settings: Any) -> None:
    # Versions minted before revision 0010 have no stored lists: nothing to diff against.
    client = TestClient(create_app(settings, services=services))
    issue(client, services, enrol(client, services)["id"])
    root = services.keys.root_key()
    now = services.clock()
    full = verify_bundle(client.get("/v1/bundles/latest").text, root=root, now=now,
                         leeway=timedelta(seconds=30))  # fmt: skip
    with Session(services.engine) as session:
        session.execute(delete(VerifierBundleShardRow))
        session.commit()
    shard = services.status.shard_ids()[0]
    restarted = registry_services(settings)  # no lists cached in memory either
    try:
        restarted.status.status_of(shard, 0)
        restarted.status._shards[shard].set_status(8, Status.INVALID)
        answer = TestClient(create_app(settings, services=restarted)).get(
            f"/v1/bundles/latest?since={full.version}&delta=entries"
        )
        sent = _claims(answer.text)
        assert set(sent["status_lists"]) == {services.status.uri(shard)}
        assert not sent.get("status_patches")
    finally:
        restarted.engine.dispose()

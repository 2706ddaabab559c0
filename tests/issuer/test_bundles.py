"""GET /v1/bundles/latest: a verifiable bundle, versions monotonic, deltas, ETag."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.core.bundle import verify_bundle
from cardsvc.core.statuslist import Status
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

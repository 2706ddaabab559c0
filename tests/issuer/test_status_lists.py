"""Status list shards: signed, cached, updated incrementally, visible across processes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from cardsvc.core.statuslist import Status, StatusListToken, verify_status_list_token
from cardsvc.core.trustlist import TrustList
from cardsvc.registry.lifecycle import OperatorAction
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    assert_problem,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    registry_services,
    services,
)

__all__ = ["client", "services"]
URI = "https://issuer.test/v1/status-lists/0"


def verified(services: Services, token: str) -> StatusListToken:
    now = utcnow()
    trust_list = TrustList.verify(
        services.keys.issue_trust_list(now=now),
        root=services.keys.root_key(),
        now=now,
        leeway=timedelta(seconds=5),
    )
    return verify_status_list_token(
        token, trust_list=trust_list, expected_sub=URI, now=now, leeway=timedelta(seconds=5)
    )


def active_card(client: TestClient, services: Services) -> dict[str, Any]:
    card = issue(client, services, enrol(client, services)["id"])
    return dict(personalize(client, services, card["card_number"])["card"])


def test_shard_is_a_signed_cached_status_list(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    first = client.get("/v1/status-lists/0")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/statuslist+jwt"
    assert first.headers["cache-control"] == "public, max-age=300"
    token = verified(services, first.text)
    assert token.ttl == 300 and token.status_list.size == 131_072
    assert token.status_list.get(card["status"]["idx"]) == Status.VALID
    etag = first.headers["etag"]
    assert client.get("/v1/status-lists/0").text == first.text  # not re-signed per request
    assert client.get("/v1/status-lists/0", headers={"If-None-Match": etag}).status_code == 304

    revoked = client.post(
        f"/v1/cards/{card['card_number']}/status-changes",
        json={"action": "revoke", "reason": "fraud"},
        headers=bearer(services),
    )
    assert revoked.status_code == 200
    after = client.get("/v1/status-lists/0", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert verified(services, after.text).status_list.get(card["status"]["idx"]) == Status.INVALID

    listing = client.get("/v1/status-lists").json()
    assert listing["items"] == [{"shard": 0, "uri": URI}]
    assert_problem(client.get("/v1/status-lists/7"), 404)
    assert_problem(client.get("/v1/status-lists/-1"), 422)
    assert_problem(client.get("/v1/status-lists/abc"), 422)


def test_a_change_does_not_rescan_the_database(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    client.get("/v1/status-lists/0")  # loads the shard once
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(services.engine, "before_cursor_execute", record)
    try:
        services.cards.change(
            card["card_number"], OperatorAction.REVOKE, reason="x", actor="t", now=utcnow()
        )
        body = client.get("/v1/status-lists/0").text
    finally:
        event.remove(services.engine, "before_cursor_execute", record)
    assert verified(services, body).status_list.get(card["status"]["idx"]) == Status.INVALID
    full_reads = [s for s in statements if "cards.status_shard = " in s and "card_events" not in s]
    assert full_reads == [], full_reads


def test_changes_from_another_process_appear_in_the_next_list(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    client.get("/v1/status-lists/0")
    other = registry_services(services.settings)  # another worker on the same database
    try:
        other.cards.change(
            card["card_number"],
            OperatorAction.REPORT_TEMPORARY_LOSS,
            reason="called the hotline",
            actor="call-centre",
            now=utcnow(),
        )
    finally:
        other.engine.dispose()
    served = verified(services, client.get("/v1/status-lists/0").text)
    assert served.status_list.get(card["status"]["idx"]) == Status.SUSPENDED


def test_indexes_are_random_and_unique(client: TestClient, services: Services) -> None:
    indexes = [
        issue(client, services, enrol(client, services)["id"])["status"]["idx"] for _ in range(20)
    ]
    assert len(set(indexes)) == 20
    assert max(indexes) - min(indexes) > 131_072 // 10  # spread over the shard

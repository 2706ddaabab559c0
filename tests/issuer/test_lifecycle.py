"""The card lifecycle: explicit rules, 409 with reasons, records, lapse with a fake clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.core.statuslist import Status
from cardsvc.errors import Conflict
from cardsvc.registry.errors import IllegalTransitionError
from cardsvc.registry.lifecycle import RULES, Action, CardState, transition
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    assert_problem,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    services,
)

__all__ = ["client", "services"]


def active_card(client: TestClient, services: Services) -> dict[str, Any]:
    card = issue(client, services, enrol(client, services)["id"])
    return dict(personalize(client, services, card["card_number"])["card"])


def change(client: TestClient, services: Services, number: str, action: str, **kw: str) -> Any:
    return client.post(
        f"/v1/cards/{number}/status-changes",
        json={"action": action, "reason": kw.get("reason", "at the counter")},
        headers=bearer(services, subject=kw.get("subject", "clerk-1")),
    )


@pytest.mark.parametrize("action", list(RULES))
@pytest.mark.parametrize("state", list(CardState))
def test_rules_table_is_total(action: Action, state: CardState) -> None:
    rule = RULES[action]
    if state in rule.allowed_from:
        assert transition(action, state).to is rule.to
    else:
        with pytest.raises(IllegalTransitionError) as info:
            transition(action, state)
        assert isinstance(info.value, Conflict) and info.value.state == state.value


def test_revoked_and_expired_are_final() -> None:
    for action in RULES:
        for state in (CardState.REVOKED, CardState.EXPIRED):
            with pytest.raises(IllegalTransitionError, match="final"):
                transition(action, state)


def status_of(services: Services, card: dict[str, Any]) -> Status:
    return services.status.status_of(0, card["status"]["idx"])


def test_temporary_loss_resume_and_formal_loss(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    number = card["card_number"]
    suspended = change(client, services, number, "report_temporary_loss", subject="clerk-2")
    assert suspended.status_code == 200 and suspended.json()["state"] == "suspended"
    assert suspended.json()["suspended_until"] is not None
    assert status_of(services, card) is Status.SUSPENDED
    resumed = change(client, services, number, "resume", reason="found in bag")
    assert resumed.json()["state"] == "active" and resumed.json()["suspended_until"] is None
    assert status_of(services, card) is Status.VALID
    not_suspended = change(client, services, number, "resume")
    assert "active" in assert_problem(not_suspended, 409)["detail"]
    lost = change(client, services, number, "report_loss", reason="formal report")
    assert lost.json()["state"] == "revoked" and lost.json()["revocation_reason"] == "formal_loss"
    assert status_of(services, card) is Status.INVALID
    for action in ("resume", "report_temporary_loss", "revoke"):
        body = assert_problem(change(client, services, number, action), 409)
        assert body["state"] == "revoked" and "final" in body["detail"]

    events = client.get(f"/v1/cards/{number}/events", headers=bearer(services)).json()["items"]
    assert [e["action"] for e in events] == [
        "issue",
        "personalize",
        "report_temporary_loss",
        "resume",
        "report_loss",
    ]
    assert events[2]["actor"] == "clerk-2" and events[3]["reason"] == "found in bag"
    assert all(e["at"].endswith("Z") for e in events)
    bad_action = change(client, services, number, "expire")
    assert_problem(bad_action, 422)
    no_reason = client.post(
        f"/v1/cards/{number}/status-changes",
        json={"action": "revoke", "reason": ""},
        headers=bearer(services),
    )
    assert_problem(no_reason, 422)


def test_temporary_loss_lapses_after_the_configured_days(
    client: TestClient, services: Services
) -> None:
    card = active_card(client, services)
    number = card["card_number"]
    change(client, services, number, "report_temporary_loss")
    start = utcnow()
    lapse_days = services.settings.temporary_loss_lapse_days
    services.clock = lambda: start + timedelta(days=lapse_days) - timedelta(minutes=1)
    still = client.get(f"/v1/cards/{number}", headers=bearer(services)).json()
    assert still["state"] == "suspended"
    services.clock = lambda: start + timedelta(days=lapse_days, minutes=1)
    lapsed = client.get(f"/v1/cards/{number}", headers=bearer(services)).json()
    assert lapsed["state"] == "active"
    assert status_of(services, card) is Status.VALID
    events = client.get(f"/v1/cards/{number}/events", headers=bearer(services)).json()["items"]
    assert (events[-1]["action"], events[-1]["actor"]) == ("lapse", "system")


def test_confirmed_loss_does_not_lapse(client: TestClient, services: Services) -> None:
    card = active_card(client, services)
    number = card["card_number"]
    change(client, services, number, "report_temporary_loss")
    change(client, services, number, "report_loss", reason="confirmed at the counter")
    later = utcnow() + timedelta(days=365)
    assert services.cards.sweep(now=later, force=True).lapsed == 0
    services.clock = lambda: later
    assert client.get(f"/v1/cards/{number}", headers=bearer(services)).json()["state"] == "revoked"


def test_sweep_lapses_and_expires_deterministically(client: TestClient, services: Services) -> None:
    suspended = active_card(client, services)
    change(client, services, suspended["card_number"], "report_temporary_loss")
    fresh = active_card(client, services)
    in_15_days = utcnow() + timedelta(days=15)
    assert services.cards.sweep(now=in_15_days, force=True).lapsed == 1
    assert services.cards.sweep(now=in_15_days, force=True).lapsed == 0
    after_expiry = utcnow() + timedelta(days=366 * 10 + 2)
    result = services.cards.sweep(now=after_expiry, force=True)
    assert result.expired >= 2
    for card in (suspended, fresh):
        assert status_of(services, card) is Status.INVALID
        services.clock = lambda: after_expiry
        got = client.get(f"/v1/cards/{card['card_number']}", headers=bearer(services)).json()
        assert got["state"] == "expired"


def test_reissue_revokes_the_old_card_and_links_the_new(
    client: TestClient, services: Services
) -> None:
    old = active_card(client, services)
    response = client.post(
        f"/v1/cards/{old['card_number']}/reissue",
        json={"reason": "chip damaged"},
        headers=bearer(services),
    )
    assert response.status_code == 201, response.json()
    new = response.json()
    assert new["person_id"] == old["person_id"] and new["card_number"] != old["card_number"]
    assert new["state"] == "pending_personalization" and new["replaces_card_id"]
    gone = client.get(f"/v1/cards/{old['card_number']}", headers=bearer(services)).json()
    assert (gone["state"], gone["revocation_reason"]) == ("revoked", "reissued")
    assert status_of(services, old) is Status.INVALID
    again = client.post(
        f"/v1/cards/{old['card_number']}/reissue",
        json={"reason": "again"},
        headers=bearer(services),
    )
    assert_problem(again, 409)
    pending = client.post(
        f"/v1/cards/{new['card_number']}/reissue",
        json={"reason": "not yet written"},
        headers=bearer(services),
    )
    assert "not personalized" in assert_problem(pending, 409)["detail"]

"""Every flow a user can take, on SQLite and on PostgreSQL, then ``cardsvc audit verify``
must pass: the audit log is complete after ordinary work. A checkpoint over the same log,
tampered with, is refused.

The flows go through the API, the CLI and the services as operators, holders, counters
and partners use them, with the shared helpers of the other issuer tests.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from cardsvc.cli.main import app
from cardsvc.core.keys import b64url_decode, b64url_encode
from cardsvc.core.transaction import Kind
from cardsvc.db.models import audit_leaves
from cardsvc.ecards.activation import CHIP_AUTH_CONTEXT
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint, verify
from tests.issuer.registry_helpers import (
    AUDITOR,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    services,
    unique_citizen_id,
)
from tests.issuer.test_conflict_reviews import conflicts
from tests.issuer.test_partners import partner_token
from tests.issuer.transaction_helpers import (
    ADMIN,
    active_card,
    new_entitlement,
    signed,
    terminal,
)

__all__ = ["client", "services"]


def cardsvc(services: Services, *args: str) -> tuple[int, str]:
    """``cardsvc ARGS`` as the operator runs it, on the test's database and key store."""
    settings = services.settings
    env = {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": "test passphrase",
        "CARDSVC_ISSUER": settings.issuer,
        "CARDSVC_STATUS_SHARD_SIZE": str(settings.status_shard_size),
    }
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def status_change(client: TestClient, services: Services, number: str, action: str) -> None:
    answer = client.post(
        f"/v1/cards/{number}/status-changes",
        json={"action": action, "reason": f"scenario: {action}"},
        headers=bearer(services),
    )
    assert answer.status_code == 200, answer.json()


def registry_flows(client: TestClient, services: Services, tmp_path: Path) -> None:
    # Enrol, issue, personalise; a name correction.
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    personalize(client, services, card["card_number"])
    renamed = client.post(
        f"/v1/persons/{person['id']}/name-corrections",
        json={"name": "李四", "reason": "typo at enrolment"},
        headers=bearer(services),
    )
    assert renamed.status_code == 200, renamed.json()

    # Batch issuance from the CLI, and one of its cards personalised.
    persons_csv = tmp_path / "persons.csv"
    rows = [f"{unique_citizen_id()},批量{i}" for i in range(4)]
    persons_csv.write_text("citizen_id,name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    code, out = cardsvc(services, "issue-batch", str(persons_csv))
    assert code == 0 and "cards issued 4" in out, out
    batch_person = client.get(
        "/v1/persons", params={"limit": 100}, headers=bearer(services)
    ).json()["items"]
    batch_cards = [
        c
        for p in batch_person
        if p["name"].startswith("批量")
        for c in client.get(f"/v1/persons/{p['id']}/cards", headers=bearer(services)).json()[
            "items"
        ]
    ]
    assert len(batch_cards) == 4
    personalize(client, services, batch_cards[0]["card_number"])

    # Each operator lifecycle change, a reissue, a death.
    number = card["card_number"]
    for action in ("report_temporary_loss", "resume", "report_temporary_loss"):
        status_change(client, services, number, action)
    lost = issue(client, services, enrol(client, services)["id"])["card_number"]
    personalize(client, services, lost)
    status_change(client, services, lost, "report_loss")
    revoked = issue(client, services, enrol(client, services)["id"])["card_number"]
    status_change(client, services, revoked, "revoke")
    reissued = client.post(
        f"/v1/cards/{batch_cards[0]['card_number']}/reissue",
        json={"reason": "damaged"},
        headers=bearer(services),
    )
    assert reissued.status_code == 201, reissued.json()
    deceased = enrol(client, services)
    issue(client, services, deceased["id"])
    next_year = f"{services.clock().year + 1}-01"  # owed after the death: stopped by it
    new_entitlement(client, services, deceased["id"], period=next_year)
    death = client.post(
        f"/v1/persons/{deceased['id']}/death",
        json={"died_on": services.clock().date().isoformat(), "reason": "death certificate"},
        headers=bearer(services, ADMIN),
    )
    assert death.status_code == 200, death.json()

    # The sweep: the temporary loss report lapses once its period is over.
    lapse = timedelta(days=services.settings.temporary_loss_lapse_days)
    later = services.clock() + lapse + timedelta(days=1)
    assert services.cards.sweep(now=later, force=True).lapsed == 1
    code, out = cardsvc(services, "lifecycle", "sweep")
    assert code == 0, out

    # Entitlements imported from the CLI.
    entitled = enrol(client, services)
    table = tmp_path / "entitlements.csv"
    table.write_text(
        f"citizen_id,benefit,period,amount_fen\n{entitled['citizen_id']},pension,2025-01,350000\n",
        encoding="utf-8",
    )
    code, out = cardsvc(services, "entitlements", "import", str(table))
    assert code == 0 and "created 1" in out, out


def ecard_flows(client: TestClient, services: Services) -> None:
    # Online activation with a code, tokens minted and verified, the holder's loss report.
    holder = active_holder(client, services)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    minted = mint(client, services, ecard["ecard_id"], phone)
    assert minted.status_code == 200, minted.json()
    token = minted.json()["tokens"][0]["token"]
    assert verify(client, services, token).status_code == 200
    path = f"/v1/ecards/{ecard['ecard_id']}/loss-report"
    reported = client.post(
        path, json={}, headers={"DPoP": phone.proof(services, client, "POST", path)}
    )
    assert reported.status_code == 200, reported.json()

    # Activation at a counter, proven by the chip.
    at_counter = active_holder(client, services)
    challenge = client.post(
        "/v1/ecards/counter-challenges",
        json={"card_number": at_counter.card_number},
        headers=bearer(services),
    ).json()
    answer = at_counter.chip.sign(CHIP_AUTH_CONTEXT + b64url_decode(challenge["nonce"]))
    bound = client.post(
        "/v1/ecards/counter-activations",
        json={
            "challenge": challenge["challenge"],
            "chip_signature": b64url_encode(answer),
            "pin_verified": True,
            "device_jwk": Phone().jwk,
        },
        headers=bearer(services),
    )
    assert bound.status_code == 201, bound.json()


def transaction_flows(client: TestClient, services: Services) -> None:
    # Online: a benefit collected, a fee paid.
    card = active_card(client, services)
    counter = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id)
    for body in (
        signed(client, counter, card, entitlement=entitlement["id"]),
        signed(client, counter, card, kind=Kind.FEE, amount=200, reference="fee-1"),
    ):
        answer = client.post(
            "/v1/transactions",
            json=body,
            headers=counter.headers | {"Idempotency-Key": str(uuid.uuid4())},
        )
        assert answer.status_code == 201, answer.json()

    # Offline at two counters, synced: a double collection and a fork, both resolved.
    conflicts(client, services)
    auditor = bearer(services, AUDITOR, subject="auditor-1")
    listed = client.get("/v1/transactions/conflicts", headers=auditor).json()["items"]
    assert len(listed) == 2
    for item, decision in zip(listed, ("refused", "cleared"), strict=True):
        done = client.post(
            f"/v1/transactions/conflicts/{item['ref']}/resolution",
            json={"decision": decision, "reason": "reviewed in the scenario"},
            headers=auditor,
        )
        assert done.status_code == 201, done.json()


def operator_flows(services: Services) -> None:
    code, out = cardsvc(services, "keys", "rotate", "status-list")
    assert code == 0, out
    client_id, _ = partner_token(services, frozenset({"transport"}), 42)
    code, out = cardsvc(
        services, "clients", "policy", client_id, "--purpose", "culture", "--rate-limit", "7"
    )
    assert code == 0, out


def leaf_kinds(services: Services) -> set[str]:
    with services.engine.connect() as conn:
        return set(conn.scalars(select(audit_leaves.c.kind)))


def test_every_flow_leaves_a_log_that_verifies(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    registry_flows(client, services, tmp_path)
    ecard_flows(client, services)
    transaction_flows(client, services)
    operator_flows(services)
    # Expiry: the sweep once the cards' validity is over.
    years = services.settings.card_validity_years
    assert services.cards.sweep(now=services.clock() + timedelta(days=366 * years + 2)).expired

    assert leaf_kinds(services) >= {
        "key.created", "key.rotated", "key.trust_list", "client.policy_changed",
        "person.enrolled", "person.name", "person.deceased_on",
        "card.issue", "card.personalize", "card.chip_bound", "card.report_temporary_loss",
        "card.resume", "card.lapse", "card.report_loss", "card.revoke", "card.reissue",
        "card.holder_deceased", "card.expire", "card.ecard_bound",
        "ecard.code_issued", "ecard.bound", "ecard.revoked",
        "entitlement.created", "entitlement.stopped",
        "transaction.benefit", "transaction.fee", "transaction.benefit.conflict",
        "transaction.held", "transaction.review.refused", "transaction.review.cleared",
    }  # fmt: skip
    code, out = cardsvc(services, "audit", "verify")
    assert code == 0, out
    assert "audit log OK" in out
    code, out = cardsvc(services, "audit", "checkpoint")
    assert code == 0, out

    # Behind the log's back: one card event rewritten. No checkpoint vouches for that.
    with services.engine.begin() as conn:
        event = conn.scalar(text("SELECT max(id) FROM card_events"))
        conn.execute(
            text("UPDATE card_events SET reason = 'nothing happened' WHERE id = :id"),
            {"id": event},
        )
    code, out = cardsvc(services, "audit", "checkpoint")
    assert code == 1, out
    assert f"card_events row {event}: differs from what audit leaf" in out
    assert "refusing to sign" in out
    code, out = cardsvc(services, "audit", "verify")
    assert code == 1 and f"DIVERGENCE at card_events row {event}" in out, out

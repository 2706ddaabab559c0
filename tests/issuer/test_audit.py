"""The audit log on SQLite and PostgreSQL: leaves in the same transaction, concurrency,
checkpoints, proofs over the API, receipts checked with cardsvc.core alone, tamper tests."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from cardsvc.audit import log as audit_log
from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.core.checkpoint import verify_checkpoint
from cardsvc.core.keys import KeyPurpose, b64url_decode
from cardsvc.core.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from cardsvc.core.trustlist import TrustList
from cardsvc.db.models import audit_leaves
from cardsvc.db.session import write_session
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    AUDITOR,
    assert_problem,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    services,
)

__all__ = ["client", "services"]


def kinds(services: Services) -> list[str]:
    with services.engine.connect() as conn:
        return list(conn.scalars(select(audit_leaves.c.kind).order_by(audit_leaves.c.idx)))


def trust_list(services: Services) -> TrustList:
    now = utcnow()
    return TrustList.verify(
        services.keys.issue_trust_list(now=now),
        root=services.keys.root_key(),
        now=now,
        leeway=timedelta(seconds=5),
    )


def scenario(client: TestClient, services: Services) -> dict[str, Any]:
    """Enrol, issue, personalize, suspend, correct the name: one leaf per change."""
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    done = personalize(client, services, card["card_number"])
    headers = bearer(services)
    changed = client.post(
        f"/v1/cards/{card['card_number']}/status-changes",
        json={"action": "report_temporary_loss", "reason": "lost wallet"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.json()
    renamed = client.post(
        f"/v1/persons/{person['id']}/name-corrections",
        json={"name": "李四", "reason": "typo at enrolment"},
        headers=headers,
    )
    assert renamed.status_code in (200, 201), renamed.json()
    return {"person": person, "card": card, "personalized": done}


def test_changes_append_leaves_and_receipts_verify_with_core_alone(
    client: TestClient, services: Services
) -> None:
    start = len(kinds(services))  # key events of the fixture's `keys init`
    assert kinds(services)[:start] == ["key.created"] * start and start >= 2
    done = scenario(client, services)
    assert kinds(services)[start:] == [
        "person.enrolled",
        "card.issue",
        "card.personalize",
        "card.chip_bound",
        "card.report_temporary_loss",
        "person.name",
    ]
    receipt = done["card"]["audit"]
    assert receipt["leaf_index"] == start + 1
    chip_receipt = done["personalized"]["audit"]
    assert chip_receipt["leaf_index"] == start + 3

    # A terminal: public checkpoint, proof with audit:read, check with cardsvc.core only.
    response = client.get("/v1/audit/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/audit-checkpoint+jwt")
    assert "public" in response.headers["cache-control"]
    cp = verify_checkpoint(
        response.text, trust_list=trust_list(services), now=utcnow(), leeway=timedelta(seconds=5)
    )
    assert cp.size == start + 6
    assert (
        client.get(
            "/v1/audit/checkpoint", headers={"If-None-Match": response.headers["etag"]}
        ).status_code
        == 304
    )
    for r in (receipt, chip_receipt):
        leaf = b64url_decode(r["leaf"])
        assert b64url_decode(r["leaf_hash"]) == leaf_hash(leaf)
        assert b"citizen" not in leaf and "张三".encode() not in leaf
        proof = client.get(
            "/v1/audit/proofs/inclusion",
            params={"index": r["leaf_index"], "size": cp.size},
            headers=bearer(services, AUDITOR, subject="auditor-1"),
        ).json()
        hashes = [b64url_decode(h) for h in proof["hashes"]]
        verify_inclusion(
            leaf_hash(leaf), index=r["leaf_index"], size=cp.size, proof=hashes, root=cp.root
        )

    # The log grows; a later checkpoint is consistent with the earlier one.
    enrol(client, services)
    later = services.audit.sign_checkpoint(now=utcnow())
    proof = client.get(
        "/v1/audit/proofs/consistency",
        params={"first": cp.size, "second": later.size},
        headers=bearer(services, AUDITOR, subject="auditor-1"),
    ).json()
    verify_consistency(
        first=cp.size,
        second=later.size,
        first_root=cp.root,
        second_root=later.root,
        proof=[b64url_decode(h) for h in proof["hashes"]],
    )


def test_proofs_need_audit_read_and_refuse_out_of_range(
    client: TestClient, services: Services
) -> None:
    enrol(client, services)
    size = services.audit.size()
    auditor = bearer(services, AUDITOR, subject="auditor-1")
    url = "/v1/audit/proofs/inclusion"
    assert_problem(client.get(url, params={"index": 0}), 401)
    assert client.get(url, params={"index": 0}, headers=auditor).status_code == 200
    for params in ({"index": size}, {"index": 0, "size": size + 1}, {"index": 3, "size": 2}):
        assert_problem(client.get(url, params=params, headers=auditor), 400)
    assert_problem(client.get(url, params={"index": -1}, headers=auditor), 422)
    url = "/v1/audit/proofs/consistency"
    for params in ({"first": 2, "second": 1}, {"first": 1, "second": size + 1}):
        assert_problem(client.get(url, params=params, headers=auditor), 400)
    assert_problem(client.get(url, params={"first": 0, "second": 1}, headers=auditor), 422)


def test_a_failed_change_leaves_no_leaf(client: TestClient, services: Services) -> None:
    card = issue(client, services, enrol(client, services)["id"])
    before = services.audit.size()
    illegal = client.post(
        f"/v1/cards/{card['card_number']}/status-changes",
        json={"action": "resume", "reason": "x"},
        headers=bearer(services),
    )
    assert_problem(illegal, 409)
    with pytest.raises(RuntimeError), write_session(services.engine) as session:
        audit_log.append(
            session,
            AuditEvent(kind=AuditKind.KEY_TRUST_LIST, subject="test:rolled-back"),
            actor=Actor("t"),
            now=utcnow(),
        )
        raise RuntimeError("the change fails after its leaf was appended")
    assert services.audit.size() == before == len(kinds(services))


def test_key_events_are_recorded(services: Services) -> None:
    services.keys.rotate(KeyPurpose.STATUS_LIST, now=utcnow())
    services.keys.issue_trust_list(now=utcnow())
    assert kinds(services)[-2:] == ["key.rotated", "key.trust_list"]


def test_concurrent_appends_get_unique_consecutive_indexes(services: Services) -> None:
    threads, per_thread = 6, 8
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    base = services.audit.size()

    def work(n: int) -> None:
        try:
            for i in range(per_thread):
                with write_session(services.engine) as session:
                    index = audit_log.append(
                        session,
                        AuditEvent(
                            kind=AuditKind.KEY_TRUST_LIST, subject=f"t:{n}:{i}", data={"i": i}
                        ),
                        actor=Actor(f"thread-{n}"),
                        now=utcnow(),
                    )
                with lock:
                    got.append(index)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert sorted(got) == list(range(base, base + threads * per_thread))
    with services.engine.connect() as conn:
        hashes = [bytes(h) for h in conn.scalars(select(audit_leaves.c.leaf_hash).order_by("idx"))]
    checkpoint = services.audit.sign_checkpoint(now=utcnow(), full=True)
    assert checkpoint.root == root_of(hashes)


# --- tamper tests: change the database behind the log's back -> `audit verify` names it --


def _ids(services: Services) -> dict[str, Any]:
    with services.engine.connect() as conn:
        event_id = conn.scalar(text("SELECT max(id) FROM card_events"))
        leaf = conn.scalar(
            text("SELECT idx FROM audit_leaves WHERE kind = 'card.issue' ORDER BY idx LIMIT 1")
        )
    return {"event": event_id, "leaf": leaf}


TAMPER = {
    # name: (SQL, what the first finding names)
    "edit leaf data": (
        "UPDATE audit_leaves SET data = replace(data, 'card.issue', 'card.issuf') "
        "WHERE idx = {leaf}",
        "leaf {leaf}: stored hash does not match its data",
    ),
    "edit leaf data and its hash": (
        "UPDATE audit_leaves SET (leaf_hash, kind, subject, data) = "
        "(SELECT leaf_hash, kind, subject, data FROM audit_leaves WHERE idx = 0) "
        "WHERE idx = {leaf}",
        "leaves [",
    ),
    "delete a leaf": ("DELETE FROM audit_leaves WHERE idx = {leaf}", "leaf {leaf}: missing"),
    "reorder leaves": (
        "UPDATE audit_leaves SET idx = 1000000 WHERE idx = {leaf};"
        "UPDATE audit_leaves SET idx = {leaf} WHERE idx = {leaf} + 1;"
        "UPDATE audit_leaves SET idx = {leaf} + 1 WHERE idx = 1000000",
        "leaves [",
    ),
    "insert a leaf": (
        "INSERT INTO audit_leaves (idx, leaf_hash, kind, subject, at, data, salt) "
        "SELECT (SELECT max(idx) + 1 FROM audit_leaves), leaf_hash, kind, subject, at, data, "
        "salt FROM audit_leaves WHERE idx = {leaf}",
        "audit_state",
    ),
    "change a card event": (
        "UPDATE card_events SET reason = 'nothing happened' WHERE id = {event}",
        "card_events row {event}: differs from what audit leaf",
    ),
    "delete a card event": (
        "DELETE FROM card_events WHERE id = {event}",
        "records card_events row {event}, which is gone",
    ),
    "change a card's state": ("UPDATE cards SET state = 'active'", "cards row"),
    "swap the chip key": ("UPDATE cards SET chip_kid = 'attacker-kid'", "cards row"),
    "change a name": ("UPDATE persons SET name = '王五'", "persons row"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_audit_verify_detects_tampering_and_names_the_place(
    case: str, client: TestClient, services: Services
) -> None:
    from cardsvc.cli.main import app

    scenario(client, services)
    services.audit.sign_checkpoint(now=utcnow())
    enrol(client, services)  # a leaf after the checkpoint
    settings = services.settings
    env = {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": "test passphrase",
        "CARDSVC_ISSUER": settings.issuer,
    }
    clean = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert clean.exit_code == 0, clean.output
    assert "audit log OK" in clean.output

    ids = _ids(services)
    sql, expected = TAMPER[case]
    with services.engine.begin() as conn:
        for statement in sql.format(**ids).split(";"):
            conn.execute(text(statement))
    result = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 1, result.output
    assert "DIVERGENCE at " + expected.format(**ids) in result.output or (
        expected.format(**ids) in result.output
    ), result.output


def test_cli_prove_and_checkpoint(client: TestClient, services: Services) -> None:
    import json

    from cardsvc.cli.main import app

    done = scenario(client, services)
    settings = services.settings
    env = {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": "test passphrase",
        "CARDSVC_ISSUER": settings.issuer,
    }
    signed = CliRunner().invoke(app, ["audit", "checkpoint"], env=env)
    assert signed.exit_code == 0, signed.output
    index = done["card"]["audit"]["leaf_index"]
    proved = CliRunner().invoke(app, ["audit", "prove", str(index)], env=env)
    assert proved.exit_code == 0, proved.output
    proof = json.loads(proved.stdout)
    verify_inclusion(
        leaf_hash(proof["leaf"].encode()),
        index=index,
        size=proof["size"],
        proof=[b64url_decode(h) for h in proof["hashes"]],
        root=b64url_decode(proof["root"]),
    )

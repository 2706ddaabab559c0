"""The audit log is complete after ordinary work (found from outside, issue 14 part 5):
batch issuance, wallet activation, `keys init` before `db upgrade`, and a checkpoint over
a log that fails verification. Each goes through the CLI an operator runs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from cardsvc.cli.main import app
from cardsvc.db.migrate import upgrade
from cardsvc.db.models import audit_checkpoints, audit_leaves
from cardsvc.registry.batch import BatchIssuer, read_rows
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from tests.issuer.ecard_helpers import Phone, activate, active_holder
from tests.issuer.registry_helpers import client, enrol, services, unique_citizen_id

__all__ = ["client", "services"]


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": "test passphrase",
        "CARDSVC_ISSUER": settings.issuer,
    }


def cardsvc(settings: Settings, *args: str) -> tuple[int, str]:
    """Run ``cardsvc ARGS`` in process; ``(exit code, stdout + stderr)``."""
    result = CliRunner().invoke(app, list(args), env=cli_env(settings))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def leaf_kinds(services: Services) -> list[str]:
    with services.engine.connect() as conn:
        return list(conn.scalars(select(audit_leaves.c.kind).order_by(audit_leaves.c.idx)))


def test_issue_batch_then_audit_verify_passes(services: Services, tmp_path: Path) -> None:
    persons = tmp_path / "persons.csv"
    rows = [f"{unique_citizen_id()},持卡人{i}" for i in range(7)]
    persons.write_text("citizen_id,name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    code, out = cardsvc(services.settings, "issue-batch", str(persons))
    assert code == 0, out
    assert "cards issued 7" in out
    kinds = leaf_kinds(services)
    assert kinds.count("person.enrolled") == 7 and kinds.count("card.issue") == 7
    code, out = cardsvc(services.settings, "audit", "verify")
    assert code == 0, out
    assert "audit log OK" in out


def test_batch_for_a_person_already_enrolled_records_the_card_only(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services, name="甲")
    issuer = BatchIssuer(services.engine, services.status, validity_years=10)
    csv = f"citizen_id,name\n{person['citizen_id']},甲\n"
    before = leaf_kinds(services)
    first = issuer.run(read_rows(io.StringIO(csv)), actor="batch:a", now=utcnow())
    assert first.cards_issued == 1 and first.persons_existing == 1
    assert leaf_kinds(services) == [*before, "card.issue"]
    again = issuer.run(read_rows(io.StringIO(csv)), actor="batch:a", now=utcnow())
    assert again.cards_existing == 1 and len(leaf_kinds(services)) == len(before) + 1
    code, out = cardsvc(services.settings, "audit", "verify")
    assert code == 0, out


def test_wallet_activation_then_audit_verify_passes(client: TestClient, services: Services) -> None:
    holder = active_holder(client, services)
    activate(client, services, holder, Phone())
    code, out = cardsvc(services.settings, "audit", "verify")
    assert code == 0, out
    assert leaf_kinds(services)[-2:] == ["card.ecard_bound", "ecard.bound"]


def test_keys_init_before_db_upgrade_loses_no_key_event(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    code, out = cardsvc(settings, "keys", "init")  # the README's order
    assert code == 0, out
    assert out.count("created") == 7
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "key events wait in" in warnings[0], warnings
    assert "7 key events wait" in out and "cardsvc db upgrade" in out
    code, out = cardsvc(settings, "db", "upgrade")
    assert code == 0, out
    assert "7 key events" in out
    services = Services.from_settings(settings)
    try:
        assert leaf_kinds(services) == ["key.created"] * 7
        code, out = cardsvc(settings, "audit", "verify")
        assert code == 0, out
        # Drained once: a second upgrade appends nothing.
        code, out = cardsvc(settings, "db", "upgrade")
        assert code == 0 and "key events" not in out, out
        assert len(leaf_kinds(services)) == 7
    finally:
        services.engine.dispose()


def test_audit_verify_names_key_events_still_waiting(settings: Settings) -> None:
    assert cardsvc(settings, "keys", "init")[0] == 0
    services = Services.from_settings(settings)
    try:
        upgrade(services.engine)  # the schema, but not through `cardsvc db upgrade`
    finally:
        services.engine.dispose()
    code, out = cardsvc(settings, "audit", "verify")
    assert code == 1, out
    assert "7 key events" in out and "not in the audit log yet" in out


def test_audit_checkpoint_refuses_a_log_that_fails_verification(
    client: TestClient, services: Services
) -> None:
    active_holder(client, services)
    code, out = cardsvc(services.settings, "audit", "checkpoint")
    assert code == 0, out
    with services.engine.begin() as conn:
        conn.execute(text("UPDATE card_events SET reason = 'nothing happened'"))
    with services.engine.connect() as conn:
        signed = conn.scalar(select(audit_checkpoints.c.id).order_by(audit_checkpoints.c.id.desc()))
    code, out = cardsvc(services.settings, "audit", "checkpoint")
    assert code == 1, out
    assert "refusing to sign" in out and "card_events row" in out
    with services.engine.connect() as conn:
        latest = conn.scalar(select(audit_checkpoints.c.id).order_by(audit_checkpoints.c.id.desc()))
    assert latest == signed


def test_bulk_appends_build_the_same_tree_as_single_appends(services: Services) -> None:
    from cardsvc.audit.events import Actor, AuditEvent, AuditKind
    from cardsvc.audit.log import append, append_many
    from cardsvc.audit.verify import verify
    from cardsvc.core.merkle import root_of
    from cardsvc.db.session import write_session

    actor = Actor("test")

    def event(n: int) -> AuditEvent:
        return AuditEvent(kind=AuditKind.KEY_TRUST_LIST, subject=f"test:{n}", data={"n": n})

    n = 0
    for size in (1, 3, 0, 8, 5, 1, 13):  # odd sizes cross every subtree boundary
        base = services.audit.size()
        with write_session(services.engine) as session:
            got = append_many(
                session.connection(), [event(n + i) for i in range(size)], actor=actor, now=utcnow()
            )
            assert got == range(base, base + size)
            assert append(session, event(n + size), actor=actor, now=utcnow()) == base + size
        n += size + 1
    with services.engine.connect() as conn:
        hashes = [bytes(h) for h in conn.scalars(select(audit_leaves.c.leaf_hash).order_by("idx"))]
        report = verify(conn, {r.kid: r.key for r in services.keys.records()}.get)
    assert report.first is None, report.first
    assert report.leaves == len(hashes) == services.audit.size()
    assert services.audit.sign_checkpoint(now=utcnow(), full=True).root == root_of(hashes)

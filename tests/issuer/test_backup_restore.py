"""Backup and restore as docs/operations.md says: the database (pg_dump of the issuer's
schema; SQLite's .backup) and the key store directory, restored into a fresh database and
a fresh key directory, where `cardsvc audit verify` passes (and fails once a restored row
is altered, so the check is real)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from cardsvc.api.app import create_app
from cardsvc.core.transaction import Kind
from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import head_revision
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.issuer.ecard_helpers import Phone, activate, active_holder
from tests.issuer.registry_helpers import bearer, registry_services
from tests.issuer.test_cli import CARDSVC
from tests.issuer.test_transaction_batches import offline, upload
from tests.issuer.transaction_helpers import active_card, new_entitlement, signed, terminal

PASSPHRASE = "backup test passphrase"


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed (./dev installs it)"
    return found


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq (pg_dump, psql) reads it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def cardsvc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CARDSVC, *args], env=env, capture_output=True, text=True, timeout=120)


def environment(database_url: str, key_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env.update(
        CARDSVC_DATABASE_URL=database_url,
        CARDSVC_KEY_DIR=str(key_dir),
        CARDSVC_KEY_PASSPHRASE=PASSPHRASE,
        CARDSVC_ISSUER="https://issuer.test",
    )
    return env


def make_records(services: Services) -> None:
    """Persons, cards, an e-card, online and offline transactions, a status change, a
    name correction: every kind of audited row, then a signed checkpoint."""
    client = TestClient(create_app(services.settings, services=services))
    holder = active_holder(client, services)
    activate(client, services, holder, Phone())
    card = active_card(client, services)
    t = terminal(client, services)
    entitlement = new_entitlement(client, services, card.person_id)
    online = client.post(
        "/v1/transactions",
        json=signed(client, t, card, entitlement=entitlement["id"]),
        headers=t.headers | {"Idempotency-Key": "backup-1"},
    )
    assert online.status_code == 201, online.json()
    upload(client, t, [offline(t, card, kind=Kind.FEE, amount=100, reference="bill-7")])
    assert client.post(
        f"/v1/cards/{holder.card_number}/status-changes",
        json={"action": "report_temporary_loss", "reason": "lost on the bus"},
        headers=bearer(services),
    ).status_code == 200  # fmt: skip
    assert client.post(
        f"/v1/persons/{holder.person_id}/name-corrections",
        json={"name": "李四", "reason": "typo at enrolment"},
        headers=bearer(services),
    ).status_code == 200  # fmt: skip


def back_up_keys(key_dir: Path, archive: Path) -> None:
    # As `tar -C /var/lib/cardsvc -czf keys.tar.gz keys` in docs/operations.md.
    subprocess.run([tool("tar"), "-C", str(key_dir.parent), "-czf", str(archive), key_dir.name],
                   check=True)  # fmt: skip


def restore_keys(archive: Path, into: Path) -> Path:
    into.mkdir()
    subprocess.run([tool("tar"), "-C", str(into), "-xzf", str(archive)], check=True)
    with tarfile.open(archive) as tar:
        top = {Path(name).parts[0] for name in tar.getnames()}
    assert top == {"keys"}
    return into / "keys"


def verified(env: dict[str, str]) -> str:
    current = cardsvc(env, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.split()[1] == head_revision()
    check = cardsvc(env, "audit", "verify", "--progress-every", "0")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "audit log OK" in check.stdout
    return check.stdout


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty PostgreSQL database of its own (the restore target), dropped afterwards."""
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"restore_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.orig}")
    try:
        yield str(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_pg_dump_and_key_store_restore(
    pg_schema: str, fresh_database: str, tmp_path: Path
) -> None:
    source_url = f"{POSTGRES_URL}?options=-csearch_path%3D{pg_schema}"
    key_dir = tmp_path / "live" / "keys"
    settings = Settings(database_url=source_url, key_dir=key_dir,
                        key_passphrase=PASSPHRASE,  # type: ignore[arg-type]
                        issuer="https://issuer.test")  # fmt: skip
    services = registry_services(settings)
    try:
        make_records(services)
    finally:
        services.engine.dispose()
    live = environment(source_url, key_dir)
    signed_checkpoint = cardsvc(live, "audit", "checkpoint", "--progress-every", "0")
    assert signed_checkpoint.returncode == 0, signed_checkpoint.stderr
    before = verified(live)

    # Back up: the issuer's schema (custom format), then the key store directory.
    dump = tmp_path / "cardsvc.dump"
    subprocess.run(
        [tool("pg_dump"), "--format=custom", f"--schema={pg_schema}", "--no-owner",
         f"--file={dump}", libpq(POSTGRES_URL)],
        check=True, timeout=120,
    )  # fmt: skip
    archive = tmp_path / "keys.tar.gz"
    back_up_keys(key_dir, archive)

    # Restore into a fresh database and a fresh key directory; nothing of the live ones.
    subprocess.run(
        [tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={libpq(fresh_database)}",
         str(dump)],
        check=True, timeout=120,
    )  # fmt: skip
    restored_keys = restore_keys(archive, tmp_path / "restored")
    restored_url = f"{fresh_database}?options=-csearch_path%3D{pg_schema}"
    restored = environment(restored_url, restored_keys)
    after = verified(restored)
    assert after == before  # the same leaves, checkpoints and rows
    listed = cardsvc(restored, "keys", "list")
    assert listed.returncode == 0 and "ecard" in listed.stdout, listed.stderr

    # The check is real: a restored row altered behind the log's back fails it.
    engine = make_engine(restored_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE persons SET name = '王五'"))
    engine.dispose()
    tampered = cardsvc(restored, "audit", "verify", "--progress-every", "0")
    assert tampered.returncode == 1 and "DIVERGENCE" in tampered.stderr, tampered.stderr


def test_sqlite_backup_and_key_store_restore(tmp_path: Path) -> None:
    database = tmp_path / "live" / "cardsvc.db"
    key_dir = tmp_path / "live" / "keys"
    settings = Settings(database_url=f"sqlite:///{database}", key_dir=key_dir,
                        key_passphrase=PASSPHRASE,  # type: ignore[arg-type]
                        issuer="https://issuer.test")  # fmt: skip
    services = registry_services(settings)
    try:
        make_records(services)
    finally:
        services.engine.dispose()
    before = verified(environment(f"sqlite:///{database}", key_dir))

    # SQLite's online backup (safe while the issuer runs, unlike copying the file and WAL).
    copy = tmp_path / "backup.db"
    subprocess.run([tool("sqlite3"), str(database), f".backup '{copy}'"], check=True, timeout=60)
    archive = tmp_path / "keys.tar.gz"
    back_up_keys(key_dir, archive)

    restored_db = tmp_path / "restored" / "cardsvc.db"
    restored_keys = restore_keys(archive, tmp_path / "restored")
    shutil.copyfile(copy, restored_db)
    after = verified(environment(f"sqlite:///{restored_db}", restored_keys))
    assert after == before

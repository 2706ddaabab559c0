"""Batch issuance (enrol + issue) cards/s on SQLite and PostgreSQL, next to a raw
SQLAlchemy Core insert of the same rows (persons, cards, card events) in the same run.

Run: ``.venv/bin/python bench/bench_issuance.py [--rows N] [--postgres URL]``

- ``raw``: precomputed row dicts, plain ``executemany`` inserts in chunks of 5,000, one
  transaction per chunk: the floor any issuance path pays for the same rows.
- ``batch``: :class:`cardsvc.registry.batch.BatchIssuer` from CSV-like rows: ID number
  and name validation, duplicate checks, idempotency look-ups, random status index
  allocation, ``ON CONFLICT DO NOTHING ... RETURNING`` inserts.
- ``+ sign``: what the rate would be if each card document were also signed here (ECDSA
  P-256, measured in this run); batch cards are pending personalization, so documents are
  signed when the chip key arrives, not in the batch.

Each figure is one run on a fresh database (fresh schema on PostgreSQL).
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.identity import gb11643_check_character
from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import upgrade
from cardsvc.db.models import Card, CardEvent, Person, StatusShard
from cardsvc.registry.batch import BatchIssuer
from cardsvc.services import Services
from cardsvc.settings import Settings

NOW = datetime.now(UTC)


def make_rows(n: int) -> list[tuple[int, dict[str, str]]]:
    rows = []
    start = date(1940, 1, 1)
    for i in range(n):
        birth = (start + timedelta(days=i // 500)).strftime("%Y%m%d")
        first17 = f"110105{birth}{i % 500 * 2 + 1:03d}"[:17]
        rows.append(
            (
                i + 2,
                {"citizen_id": first17 + gb11643_check_character(first17), "name": f"持卡人{i}"},
            )
        )
    return rows


def raw_rows(rows: list[tuple[int, dict[str, str]]]) -> tuple[list[dict[str, Any]], ...]:
    persons, cards, events = [], [], []
    used: set[int] = set()
    for i, (_line, r) in enumerate(rows):
        pid, cid = uuid.uuid4(), uuid.uuid4()
        cit = r["citizen_id"]
        persons.append(
            {
                "id": pid,
                "citizen_id": cit,
                "name": r["name"],
                "sex": "M",
                "birth_date": date(int(cit[6:10]), int(cit[10:12]), int(cit[12:14])),
                "region_code": "110105",
                "deceased_on": None,
                "created_at": NOW,
                "created_by": "bench",
                "updated_at": NOW,
            }
        )
        idx = secrets.randbelow(1 << 20)
        while idx in used:
            idx = secrets.randbelow(1 << 20)
        used.add(idx)
        cards.append(
            {
                "id": cid,
                "card_number": f"B{i:08d}",
                "person_id": pid,
                "state": "pending_personalization",
                "issue_date": NOW.date(),
                "expiry_date": NOW.date() + timedelta(days=3652),
                "status_shard": 0,
                "status_idx": idx,
                "request_key": "batch:" + hashlib.sha256(cit.encode()).hexdigest()[:48],
                "created_at": NOW,
                "created_by": "bench",
                "updated_at": NOW,
            }
        )
        events.append(
            {
                "card_id": cid,
                "action": "issue",
                "from_state": None,
                "to_state": "pending_personalization",
                "reason": "batch issuance",
                "actor": "bench",
                "at": NOW,
            }
        )
    return persons, cards, events


def bench_raw(engine: sa.Engine, rows: list[tuple[int, dict[str, str]]]) -> float:
    persons, cards, events = raw_rows(rows)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(StatusShard).values(
                shard=0, size=1 << 20, bits=2, closed=False, created_at=NOW
            )
        )
    start = time.perf_counter()
    for i in range(0, len(rows), 5000):
        with engine.begin() as conn:
            conn.execute(sa.insert(Person), persons[i : i + 5000])
            conn.execute(sa.insert(Card), cards[i : i + 5000])
            conn.execute(sa.insert(CardEvent), events[i : i + 5000])
    return len(rows) / (time.perf_counter() - start)


def bench_batch(services: Services, rows: list[tuple[int, dict[str, str]]]) -> float:
    issuer = BatchIssuer(services.engine, services.status, validity_years=10)
    start = time.perf_counter()
    report = issuer.run(iter(rows), actor="bench", now=NOW)
    elapsed = time.perf_counter() - start
    assert report.cards_issued == len(rows), report.rejected[:3]
    return len(rows) / elapsed


def sign_rate(n: int = 5000) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    data = b"x" * 700
    start = time.perf_counter()
    for _ in range(n):
        key.sign(data, ec.ECDSA(hashes.SHA256()))
    return n / (time.perf_counter() - start)


def backends(pg_url: str | None, tmp: Path) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("sqlite", lambda name: f"sqlite:///{tmp / name}.db")]
    if pg_url:
        admin = make_engine(pg_url)
        try:
            with admin.connect():
                pass
        except sa.exc.OperationalError as exc:
            print(f"postgresql skipped: {exc.orig}")
            return out

        def pg(name: str) -> str:
            schema = f"bench_{name}_{secrets.token_hex(4)}"
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            schemas.append(schema)
            return f"{pg_url}?options=-csearch_path%3D{schema}"

        out.append(("postgresql", pg))
        cleanup.append(admin)
    return out


schemas: list[str] = []
cleanup: list[sa.Engine] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = make_rows(args.rows)
    signing = sign_rate()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"{args.rows:,} rows; ECDSA P-256 sign {signing:,.0f}/s")
        print(f"{'backend':12} {'raw Core':>12} {'batch':>12} {'ratio':>7} {'+ sign':>12}")
        for name, url_for in backends(args.postgres, tmp):
            raw_engine = make_engine(url_for("raw"))
            upgrade(raw_engine)
            raw = bench_raw(raw_engine, rows)
            raw_engine.dispose()
            settings = Settings(
                database_url=url_for("batch"),
                key_dir=tmp / "keys",
                key_passphrase="bench",  # noqa: S106
            )  # type: ignore[arg-type]
            services = Services.from_settings(settings)
            services.keys.init(now=NOW)
            upgrade(services.engine)
            batch = bench_batch(services, rows)
            services.engine.dispose()
            with_sign = 1 / (1 / batch + 1 / signing)
            print(
                f"{name:12} {raw:>10,.0f}/s {batch:>10,.0f}/s {batch / raw:>6.0%} "
                f"{with_sign:>10,.0f}/s"
            )
    for engine in cleanup:
        with engine.begin() as conn:
            for schema in schemas:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()

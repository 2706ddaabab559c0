"""Load N persons with their cards into a private PostgreSQL schema with COPY (the bench's
data set; default 10 million).

    .venv/bin/python bench/pg_scale.py --count 10000000 [--schema cardsvc_scale]
        [--database-url postgresql+psycopg://root@127.0.0.1:5432/test] [--no-audit]

The schema is made by the issuer's own Alembic migrations, so the tables, constraints and
indexes are the real ones. To load fast, the loaded tables' keys, unique constraints,
foreign keys and indexes are dropped first and rebuilt afterwards from the definitions the
migrations wrote (``pg_get_constraintdef`` / ``pg_get_indexdef``), so the rebuilt schema
is the migrated one; the foreign keys are checked again when they are re-added.

Every person gets (deterministically from ``--seed``):

- a citizen ID number with its GB 11643 check character (region, birth date and sex in
  the number agree with the row), a Chinese name;
- one card: letter + 8 digits, unique; 1% pending personalization, 96% active, 1%
  suspended (lapsing), 2% revoked; each with its issue event and the events that led to
  its state (personalize, report_temporary_loss, revoke), and a random status-list entry
  in the shards (``--shard-size`` entries, ``--max-fill`` of them allocated per shard,
  as the allocator does);
- 10% an active e-card on the same shards;
- 0 to 3 collected monthly pension entitlements, each paid by one accepted transaction
  (1.0 per person on average) at one of 1,000 terminals, and 60% one open entitlement;
- with the audit log on (default): the leaves the issuer writes for these rows
  (``person.enrolled``, then one ``card.<action>`` per card event, each committing to its
  row exactly as :mod:`cardsvc.audit.rows` does), the stored subtree hashes and the tree
  size, so ``cardsvc audit verify`` finds nothing on the loaded schema. Transactions,
  entitlements and e-cards get no leaves here (the verifier does not check those rows).

Chips are not bound (no ``chip_kid``/document: those need a card in a personalization
terminal), and nobody has died. A bench, not a test fixture: tests run it with a tiny count.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cardsvc.audit.log import LEAF_VERSION
from cardsvc.core.identity import gb11643_check_character
from cardsvc.db.engine import make_engine
from cardsvc.db.migrate import upgrade
from cardsvc.registry.cards import CARD_NUMBER_LETTERS

DEFAULT_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
ACTOR = "batch:scale-loader"
#: The tables this loader fills (their keys and indexes are rebuilt after the load).
LOADED = (
    "persons",
    "cards",
    "card_events",
    "ecards",
    "entitlements",
    "transactions",
    "audit_leaves",
    "audit_nodes",
)
_REGIONS = (
    *("110105", "310104", "440305", "510107", "330106", "420102", "610113", "210102"),
    *("320106", "370102", "500103", "120101", "350102", "430104", "530102", "650102"),
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文玉梅红云飞鹏辉"
_BASE_DAY = date(1935, 1, 1)
_DAY_STEP = 7919  # prime, coprime to _DAY_SPAN: (day, seq) below is a bijection
_DAY_SPAN = 29_000
_EPOCH = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
#: Temporary losses lapse after this (past the end of 2026, when the bench runs).
_LAPSE = timedelta(days=365 + 30)


@dataclass(frozen=True, kw_only=True)
class LoadReport:
    persons: int
    rows: dict[str, int]
    shards: int
    seconds_copy: float
    seconds_rebuild: float


def citizen_id(n: int) -> tuple[str, str, date, str]:
    """The ``n``-th citizen ID number (distinct for distinct ``n``): number, region,
    birth date and sex, which the number encodes."""
    region = _REGIONS[n % len(_REGIONS)]
    j = n // len(_REGIONS)
    block, seq = divmod(j, 999)
    if block >= _DAY_SPAN:
        raise ValueError("too many persons for this generator")
    born = _BASE_DAY + timedelta(days=(block * _DAY_STEP) % _DAY_SPAN)
    seq += 1
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + gb11643_check_character(first17), region, born, "M" if seq % 2 else "F"


def card_number(n: int) -> str:
    """The ``n``-th card number: a letter and 8 digits, distinct for distinct ``n``."""
    letter, rest = divmod(n, 10**8)
    return CARD_NUMBER_LETTERS[letter] + f"{rest * 48271 % 10**8:08d}"


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _iso(at: datetime) -> str:
    """As :func:`cardsvc.audit.log.iso` writes it (and PostgreSQL reads it)."""
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class _Entries:
    """Random distinct status-list entries, shard after shard, ``fill`` per shard."""

    def __init__(self, rng: random.Random, size: int, fill: int) -> None:
        self._rng, self.size, self._fill = rng, size, fill
        self.shards = 0
        self._pool: list[int] = []

    def take(self) -> tuple[int, int]:
        if not self._pool:
            self._pool = self._rng.sample(range(self.size), self._fill)
            self.shards += 1
        return self.shards - 1, self._pool.pop()


class _Tree:
    """The audit log as it grows: leaf rows, the subtree hashes they complete.

    Leaves are written as :func:`cardsvc.audit.log.leaf_input` and
    :func:`~cardsvc.audit.log.commitment` make them, with the canonical JSON spelled out
    (sorted keys, no spaces, ASCII): several times faster than encoding dicts, and the
    test runs ``cardsvc.audit.verify`` on a loaded schema to hold the two together.
    """

    def __init__(self, out_leaves: list[str], out_nodes: list[str]) -> None:
        self.size = 0
        self._stack: list[bytes] = []
        self._leaves, self._nodes = out_leaves, out_nodes

    def add(self, kind: str, subject: str, at: str, data: str, row: str, tail: str = "") -> None:
        """A leaf: ``data`` and ``tail`` the leaf data's members before and after ``"row"``
        (canonical JSON text: ``'"a":1,'``, ``',"z":2'``), ``row`` the committed row's."""
        salt = os.urandom(16)
        digest_row = sha256(salt + row.encode("ascii")).hexdigest()
        raw = (
            f'{{"actor":"{ACTOR}","at":"{at}","data":{{{data}"row":"{digest_row}"{tail}}},'
            f'"kind":"{kind}","subject":"{subject}","v":{LEAF_VERSION}}}'
        )
        digest = sha256(b"\x00" + raw.encode("ascii")).digest()
        index = self.size
        self._leaves.append(
            f"{index}\t\\\\x{digest.hex()}\t{kind}\t{subject}\t{at}\t{raw}\t\\\\x{salt.hex()}\n"
        )
        level, i, h = 0, index, digest
        while i & 1:
            h = sha256(b"\x01" + self._stack.pop() + h).digest()
            level, i = level + 1, i >> 1
            self._nodes.append(f"{level}\t{i}\t\\\\x{h.hex()}\n")
        self._stack.append(h)
        self.size += 1


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)


_COLUMNS = {
    "persons": "id, citizen_id, name, sex, birth_date, region_code, deceased_on, created_at, "
    "created_by, updated_at",
    "cards": "id, card_number, person_id, state, issue_date, expiry_date, status_shard, "
    "status_idx, suspended_until, revocation_reason, replaces_card_id, chip_kid, chip_jwk, "
    "document, request_key, created_at, created_by, updated_at",
    "card_events": "id, card_id, person_id, action, from_state, to_state, reason, actor, at",
    "ecards": "id, ref, person_id, card_id, state, status_shard, status_idx, device_kid, "
    "device_jwk, activated_via, created_at, created_by, updated_at",
    "entitlements": "id, person_id, benefit, period, amount_fen, currency, state, "
    "transaction_id, stopped_reason, created_at, created_by, updated_at",
    "transactions": "id, kind, mode, state, conflict, card_id, person_id, terminal_id, "
    "terminal_seq, card_counter, amount_fen, currency, entitlement_id, reference, at, "
    "received_at, nonce, data, card_signature, terminal_signature, receipt, receipt_code",
    "audit_leaves": "idx, leaf_hash, kind, subject, at, data, salt",
    "audit_nodes": "level, idx, hash",
}
_TERMINALS = 1000
_PERIODS = ("2026-07", "2026-08", "2026-09", "2026-10")
_PAID = (0, 0, 1, 1, 1, 1, 2, 2, 2, 3)
_N = "\\N"


class _Generator:
    def __init__(self, seed: int, shard_size: int, max_fill: float, audit: bool) -> None:
        self.rng = random.Random(seed)
        self.entries = _Entries(self.rng, shard_size, int(shard_size * max_fill))
        self.audit = audit
        self.event_id = 0
        self.tx_count = 0
        self.out: dict[str, list[str]] = {t: [] for t in LOADED}
        self.tree = _Tree(self.out["audit_leaves"], self.out["audit_nodes"])

    def person(self, n: int) -> None:
        rng, out, audit = self.rng, self.out, self.audit
        rnd = os.urandom(64)
        pid, cid = _uuid(rnd[:16]), _uuid(rnd[16:32])
        number, region, born, sex = citizen_id(n)
        given = _GIVEN[rng.randrange(len(_GIVEN))]
        if rng.random() < 0.7:
            given += _GIVEN[rng.randrange(len(_GIVEN))]
        name = _SURNAMES[rng.randrange(len(_SURNAMES))] + given
        enrolled = _EPOCH + timedelta(seconds=n)
        at = _iso(enrolled)
        out["persons"].append(
            f"{pid}\t{number}\t{name}\t{sex}\t{born}\t{region}\t{_N}\t{at}\t{ACTOR}\t{at}\n"
        )
        issued = enrolled.date()
        expiry = issued.replace(year=issued.year + 10)
        shard, idx = self.entries.take()
        roll = rng.random()
        # The card's history: issue, then what led to its state.
        steps = [("issue", None, "pending_personalization", "batch issuance")]
        if roll >= 0.01:
            steps.append(("personalize", "pending_personalization", "active", "personalized"))
        if 0.97 <= roll < 0.98:
            steps.append(("report_temporary_loss", "active", "suspended", "holder called"))
        elif roll >= 0.98:
            steps.append(("revoke", "active", "revoked", "damaged"))
        state = steps[-1][2]
        suspended = _iso(enrolled + _LAPSE) if state == "suspended" else _N
        revoked = "revoked" if state == "revoked" else _N
        card = card_number(n)
        out["cards"].append(
            f"{cid}\t{card}\t{pid}\t{state}\t{issued}\t{expiry}\t{shard}\t{idx}\t{suspended}\t"
            f"{revoked}\t{_N}\t{_N}\t{_N}\t{_N}\t{_N}\t{at}\t{ACTOR}\t{at}\n"
        )
        if audit:
            self.tree.add(
                "person.enrolled",
                f"person:{pid}",
                at,
                "",
                f'{{"birth_date":"{born}","citizen_id":"{number}","created_by":"{ACTOR}",'
                f'"id":"{pid}","name":{_json(name)},"region_code":"{region}","sex":"{sex}"}}',
            )
        fields = (
            f'{{"card_number":"{card}","created_by":"{ACTOR}","expiry_date":"{expiry}",'
            f'"id":"{cid}","issue_date":"{issued}","person_id":"{pid}",'
            f'"replaces_card_id":null,"status_idx":{idx},"status_shard":{shard}}}'
        )
        for step, (action, before, after, reason) in enumerate(steps):
            self.event_id += 1
            event_id = self.event_id
            when = _iso(enrolled + timedelta(minutes=step))
            out["card_events"].append(
                f"{event_id}\t{cid}\t{pid}\t{action}\t{before or _N}\t{after}\t{reason}\t"
                f"{ACTOR}\t{when}\n"
            )
            if audit:
                was = f'"{before}"' if before else "null"
                self.tree.add(
                    f"card.{action}",
                    f"card:{cid}",
                    when,
                    f'"event":{event_id},"from":{was},',
                    f'{{"card":{fields},"event":{{"action":"{action}","actor":"{ACTOR}",'
                    f'"at":"{when}","card_id":"{cid}","from_state":{was},"id":{event_id},'
                    f'"reason":"{reason}","to_state":"{after}"}}}}',
                    f',"to":"{after}"',
                )
        if state == "active" and roll < 0.10:
            e_shard, e_idx = self.entries.take()
            kid = rnd[32:48].hex()
            jwk = (
                f'{{"crv":"P-256","kid":"{kid}","kty":"EC","x":"{rnd[:32].hex()}",'
                f'"y":"{rnd[32:].hex()}"}}'
            )
            out["ecards"].append(
                f"{_uuid(rnd[40:56])}\t{rnd[48:56].hex()}\t{pid}\t{cid}\tactive\t{e_shard}\t"
                f"{e_idx}\t{kid}\t{jwk}\t{'code' if roll < 0.05 else 'counter'}\t{at}\t"
                f"{ACTOR}\t{at}\n"
            )
        paid = rng.choice(_PAID) if state != "pending_personalization" else 0
        for k in range(paid):
            more = os.urandom(160)
            ent, tx = _uuid(more[:16]), _uuid(more[16:32])
            paid_at = _iso(enrolled + timedelta(days=30 * (k + 1)))
            out["entitlements"].append(
                f"{ent}\t{pid}\tpension\t{_PERIODS[k]}\t150000\tCNY\tcollected\t{tx}\t{_N}\t"
                f"{at}\t{ACTOR}\t{paid_at}\n"
            )
            seq, terminal = divmod(self.tx_count, _TERMINALS)
            self.tx_count += 1
            sig = _b64(more[32:])
            out["transactions"].append(
                f"{tx}\tbenefit\t{'online' if k % 2 else 'offline'}\taccepted\t{_N}\t{cid}\t"
                f"{pid}\tterminal-{terminal:04d}\t{seq + 1}\t{k + 1}\t150000\tCNY\t{ent}\t{_N}\t"
                f"{paid_at}\t{paid_at}\t{more[:16].hex()}\t{sig[:96]}\t{sig[:86]}\t{sig[86:]}\t"
                f"{_N}\t{_N}\n"
            )
        if roll < 0.60 and state != "revoked":
            out["entitlements"].append(
                f"{_uuid(os.urandom(16))}\t{pid}\tpension\t2026-11\t150000\tCNY\topen\t{_N}\t"
                f"{_N}\t{at}\t{ACTOR}\t{at}\n"
            )

    def drain(self) -> dict[str, str]:
        chunks = {t: "".join(lines) for t, lines in self.out.items()}
        for lines in self.out.values():
            lines.clear()
        return chunks


def _libpq(url: str, schema: str) -> str:
    parsed = make_url(url)
    return (
        f"host={parsed.host or '127.0.0.1'} port={parsed.port or 5432} "
        f"dbname={parsed.database} user={parsed.username or 'root'} "
        f"options='-csearch_path={schema}'"
    )


def schema_url(url: str, schema: str) -> str:
    """``url`` with every connection's search path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def definitions(conn: psycopg.Connection[Any], schema: str) -> list[tuple[str, str, str, str]]:
    """``(kind, table, name, definition)`` of the keys, constraints and indexes of the
    loaded tables: what a load drops and rebuilds (and what a test compares)."""
    rows = conn.execute(
        """
        SELECT c.contype, t.relname, c.conname, pg_get_constraintdef(c.oid)
          FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
          JOIN pg_namespace s ON s.oid = t.relnamespace
          LEFT JOIN pg_class r ON r.oid = c.confrelid
         WHERE s.nspname = %(s)s AND c.contype IN ('p', 'u', 'f')
           AND (t.relname = ANY(%(t)s) OR (c.contype = 'f' AND r.relname = ANY(%(t)s)))
        UNION ALL
        SELECT 'i', i.tablename, i.indexname, i.indexdef
          FROM pg_indexes i
         WHERE i.schemaname = %(s)s AND i.tablename = ANY(%(t)s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                            JOIN pg_namespace s ON s.oid = c.connamespace
                           WHERE s.nspname = %(s)s AND c.conname = i.indexname)
        ORDER BY 1, 2, 3
        """,
        {"s": schema, "t": list(LOADED)},
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def _drop(conn: psycopg.Connection[Any], defs: list[tuple[str, str, str, str]]) -> None:
    for kind in ("f", "i", "u", "p"):
        for k, table, name, _ in defs:
            if k != kind:
                continue
            if kind == "i":
                conn.execute(f'DROP INDEX "{name}"')
            else:
                conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')


def _rebuild(conn: psycopg.Connection[Any], defs: list[tuple[str, str, str, str]]) -> None:
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    for kind in ("p", "u", "i", "f"):
        for k, table, name, definition in defs:
            if k != kind:
                continue
            if kind == "i":
                conn.execute(definition)
            else:
                conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')


def load(
    url: str,
    schema: str,
    count: int,
    *,
    seed: int = 20,
    shard_size: int = 1 << 20,
    max_fill: float = 0.5,
    audit: bool = True,
    chunk: int = 20_000,
    progress: Callable[[int, float], None] | None = None,
) -> LoadReport:
    """Migrate a fresh ``schema`` (dropped first if there) and load ``count`` persons."""
    admin = make_engine(url)
    with admin.begin() as c:
        c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    engine = make_engine(schema_url(url, schema))
    upgrade(engine)
    engine.dispose()

    gen = _Generator(seed, shard_size, max_fill, audit)
    dsn = _libpq(url, schema)
    with psycopg.connect(dsn) as ddl:
        defs = definitions(ddl, schema)
        _drop(ddl, defs)
    rows = dict.fromkeys(LOADED, 0)
    start = time.perf_counter()
    conns = {t: psycopg.connect(dsn) for t in LOADED}
    try:
        with _Copies(conns) as copies:
            done = 0
            while done < count:
                for n in range(done, min(count, done + chunk)):
                    gen.person(n)
                done = min(count, done + chunk)
                for table, text in gen.drain().items():
                    if text:
                        rows[table] += text.count("\n")
                        copies[table].write(text)
                if progress:
                    progress(done, time.perf_counter() - start)
        for c in conns.values():
            c.commit()
    finally:
        for c in conns.values():
            c.close()
    copied = time.perf_counter() - start
    now = _iso(datetime.now(UTC))
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy(
            "COPY status_shards (shard, size, bits, closed, created_at) FROM STDIN"
        ) as cp:
            for s in range(gen.entries.shards):
                closed = "t" if s < gen.entries.shards - 1 else "f"
                cp.write(f"{s}\t{shard_size}\t2\t{closed}\t{now}\n")
        conn.execute("UPDATE audit_state SET size = %s WHERE id = 1", (gen.tree.size,))
        if gen.event_id:
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('card_events', 'id'), %s)", (gen.event_id,)
            )
        conn.commit()
        t0 = time.perf_counter()
        conn.autocommit = True
        _rebuild(conn, defs)
        for table in (*LOADED, "status_shards"):
            conn.execute(f'VACUUM (ANALYZE) "{table}"')
        rebuilt = time.perf_counter() - t0
    return LoadReport(
        persons=count,
        rows=rows,
        shards=gen.entries.shards,
        seconds_copy=copied,
        seconds_rebuild=rebuilt,
    )


class _Copies:
    """One open ``COPY ... FROM STDIN`` per table, each on its own connection, so the
    server parses each table's rows while this process generates the next chunk."""

    def __init__(self, conns: dict[str, psycopg.Connection[Any]]) -> None:
        self._conns = conns
        self._managers: list[Any] = []

    def __enter__(self) -> dict[str, Any]:
        out = {}
        for table, conn in self._conns.items():
            manager = conn.cursor().copy(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN")
            out[table] = manager.__enter__()
            self._managers.append(manager)
        return out

    def __exit__(self, *exc: object) -> None:
        for manager in self._managers:
            manager.__exit__(*exc)


def _iter_report(report: LoadReport) -> Iterator[str]:
    yield f"persons {report.persons:,}; status shards {report.shards}"
    for table, n in report.rows.items():
        yield f"  {table:<14} {n:>14,} rows"
    total = sum(report.rows.values())
    yield (
        f"  COPY {report.seconds_copy:8.1f} s ({total / report.seconds_copy:,.0f} rows/s, "
        f"{report.persons / report.seconds_copy:,.0f} persons/s)"
    )
    yield f"  keys, indexes, foreign keys rebuilt + VACUUM ANALYZE {report.seconds_rebuild:8.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--schema", default="cardsvc_scale")
    parser.add_argument("--count", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--shard-size", type=int, default=1 << 20)
    parser.add_argument("--max-fill", type=float, default=0.5)
    parser.add_argument("--no-audit", action="store_true", help="no audit leaves")
    args = parser.parse_args()

    def progress(done: int, seconds: float) -> None:
        if done % 500_000 == 0 or done == args.count:
            sys.stderr.write(f"{done:>12,} persons {seconds:8.1f} s\n")

    report = load(
        args.database_url,
        args.schema,
        args.count,
        seed=args.seed,
        shard_size=args.shard_size,
        max_fill=args.max_fill,
        audit=not args.no_audit,
        progress=progress,
    )
    for line in _iter_report(report):
        print(line)


if __name__ == "__main__":
    main()

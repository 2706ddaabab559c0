"""A status change -> the next served shard, on a 1,048,576-entry shard with 1% revoked.

Run: ``.venv/bin/python bench/bench_status_publish.py [--runs N] [--database-url URL]``

Sets up a shard of 2**20 entries with 1% of them held by revoked cards (random indexes,
the rest unallocated), then, ``--runs`` times, revokes one more card through the card
service (one DB transaction) and asks for the shard as served. Prints medians of:

- ``change``: the lifecycle transaction (update + event row) and the in-memory update;
- ``publish``: building the served list after the change: copy + zlib level 9 + ES256;
- baselines from the same run: bare ``zlib.compress`` of the same 256 KiB, and what a
  rescan would cost (reloading the shard's rows from the database);

and the served token's size and the compressed list size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from cardsvc.db.migrate import upgrade
from cardsvc.db.models import Card, Person, StatusShard
from cardsvc.registry.lifecycle import OperatorAction
from cardsvc.services import Services
from cardsvc.settings import Settings

SIZE = 1 << 20
NOW = datetime.now(UTC)


def populate(services: Services, revoked: int, spare: int) -> list[str]:
    """``revoked`` revoked cards plus ``spare`` active ones to revoke during the runs."""
    rng = random.Random(7)
    indexes = rng.sample(range(SIZE), revoked + spare)
    persons, cards = [], []
    for n, idx in enumerate(indexes):
        pid = uuid.uuid4()
        persons.append(
            {
                "id": pid,
                "citizen_id": f"{n:018d}",
                "name": "x",
                "sex": "M",
                "birth_date": NOW.date(),
                "region_code": "110105",
                "deceased_on": None,
                "created_at": NOW,
                "created_by": "bench",
                "updated_at": NOW,
            }
        )
        cards.append(
            {
                "id": uuid.uuid4(),
                "card_number": f"S{n:08d}",
                "person_id": pid,
                "state": "revoked" if n < revoked else "active",
                "issue_date": NOW.date(),
                "expiry_date": NOW.date() + timedelta(days=3650),
                "status_shard": 0,
                "status_idx": idx,
                "created_at": NOW,
                "created_by": "bench",
                "updated_at": NOW,
            }
        )
    with services.engine.begin() as conn:
        conn.execute(
            sa.insert(StatusShard).values(shard=0, size=SIZE, bits=2, closed=False, created_at=NOW)
        )
        conn.execute(sa.insert(Person), persons)
        conn.execute(sa.insert(Card), cards)
    return [c["card_number"] for c in cards[revoked:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        settings = Settings(
            database_url=args.database_url or f"sqlite:///{tmp / 'bench.db'}",
            key_dir=tmp / "keys",
            key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106
            status_shard_size=SIZE,
        )
        services = Services.from_settings(settings)
        services.keys.init(now=NOW)
        upgrade(services.engine)
        spare = populate(services, revoked=SIZE // 100, spare=args.runs)
        start = time.perf_counter()
        first = services.status.publication(0, now=NOW)
        first_load = time.perf_counter() - start

        change_t, publish_t, sizes = [], [], []
        for number in spare:
            t0 = time.perf_counter()
            services.cards.change(
                number, OperatorAction.REVOKE, reason="bench", actor="bench", now=NOW
            )
            t1 = time.perf_counter()
            publication = services.status.publication(0, now=NOW)
            t2 = time.perf_counter()
            assert publication.etag != first.etag
            change_t.append(t1 - t0)
            publish_t.append(t2 - t1)
            sizes.append(len(publication.body))

        raw = services.status._shards[0].statuses.to_bytes()
        zlib_t = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            compressed = zlib.compress(raw, 9)
            zlib_t.append(time.perf_counter() - t0)
        rescan_t = []
        for _ in range(3):
            services.status._shards.clear()
            t0 = time.perf_counter()
            services.status.status_of(0, 0)
            rescan_t.append(time.perf_counter() - t0)

        ms = 1000.0
        print(
            f"shard of {SIZE:,} entries (2 bits), {SIZE // 100:,} revoked (1%), "
            f"{settings.database_url.split(':')[0]}"
        )
        print(f"  first load + publish           {first_load * ms:8.1f} ms (once per process)")
        print(f"  change (transaction + memory)  {statistics.median(change_t) * ms:8.2f} ms")
        print(f"  publish after one change       {statistics.median(publish_t) * ms:8.2f} ms")
        print(
            f"  change -> new shard served     "
            f"{(statistics.median(change_t) + statistics.median(publish_t)) * ms:8.2f} ms"
        )
        print(f"  baseline: zlib -9 of 256 KiB   {statistics.median(zlib_t) * ms:8.2f} ms")
        print(
            f"  baseline: rescan of the {SIZE // 100 + args.runs:,} rows here "
            f"{statistics.median(rescan_t) * ms:8.1f} ms"
        )
        print(
            f"  compressed list {len(compressed):,} bytes; served token "
            f"{statistics.median(sizes):,.0f} bytes"
        )
        services.engine.dispose()


if __name__ == "__main__":
    main()

"""Counter transactions through the API (in-process ASGI client, SQLite file database).

- online: challenge -> card signs -> terminal signs -> POST /v1/transactions (Idempotency-Key),
  per second, next to two baselines in the same run, through the same in-process client:
  POST /v1/verify of fresh e-card tokens (an activated e-card, as in bench_ecard_verify.py)
  and a bare authenticated endpoint (POST /v1/transactions/challenges: token check + one
  insert).
- offline sync: 10,000 offline records uploaded in batches of 100 to
  POST /v1/transactions/batches; then the same 10,000 again (time, and new ledger rows: 0).

Run: .venv/bin/python bench/bench_transactions.py
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.testclient import TestClient
from issuer_fixtures import active_card, services_on, signed, terminal

from cardsvc.api.app import create_app
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData
from cardsvc.db.models import TransactionRow
from cardsvc.services import utcnow
from cardsvc.settings import Settings

ONLINE = 300
OFFLINE = 10_000
BATCH = 100  # the default 64 KB request limit fits ~120 records


def rows(services: object) -> int:
    with Session(services.engine) as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(TransactionRow)) or 0)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db",
            key_dir=Path(tmp) / "keys",
            key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106 - throwaway keys
            issuer="https://issuer.bench",
        )
        services = services_on(settings)
        client = TestClient(create_app(services.settings, services=services))
        card = active_card(client, services)
        t = terminal(client, services)

        start = time.perf_counter()
        for _ in range(ONLINE):
            client.post("/v1/transactions/challenges", headers=t.headers)
        bare = ONLINE / (time.perf_counter() - start)

        # POST /v1/verify on its own issuer (its world needs an activated e-card).
        from bench_ecard_verify import build_world

        workdir = Path(tmp) / "verify"
        workdir.mkdir()
        tokens, partner, (verify_services, _) = build_world(workdir, None, ONLINE)
        verify_client = TestClient(create_app(verify_services.settings, services=verify_services))
        headers = {"Authorization": f"Bearer {partner}"}
        start = time.perf_counter()
        for token in tokens[:ONLINE]:
            answer = verify_client.post(
                "/v1/verify", json={"token": token, "purpose": "transport"}, headers=headers
            )
            assert answer.status_code == 200, answer.json()
        verify_rate = ONLINE / (time.perf_counter() - start)

        start = time.perf_counter()
        for i in range(ONLINE):
            body = signed(client, t, card, kind=Kind.FEE, amount=100, reference=f"bill-{i}")
            answer = client.post("/v1/transactions", json=body,
                                 headers=t.headers | {"Idempotency-Key": f"k{i}"})  # fmt: skip
            assert answer.status_code == 201, answer.json()
        online = ONLINE / (time.perf_counter() - start)
        print(f"POST /v1/verify (same client):         {verify_rate:8.0f}/s (baseline)")
        print(f"bare POST /v1/transactions/challenges: {bare:8.0f}/s")
        print(f"online transaction end to end:         {online:8.0f}/s "
              f"({online / verify_rate:.2f}x verify, {online / bare:.2f}x challenge; "
              "includes its own challenge)")  # fmt: skip

        items = []
        for i in range(OFFLINE):
            t.seq += 1
            nonce = secrets.token_bytes(16)
            data = TransactionData(kind=Kind.FEE, card=card.card_number, terminal=t.id,
                                   seq=t.seq, at=int(utcnow().timestamp()), amount_fen=100,
                                   reference=f"off-{i}").encode()  # fmt: skip
            counter, sig = card.sign(nonce, data)
            record = SignedRecord.sign(nonce=nonce, data=data, counter=counter,
                                       card_signature=sig, terminal=t.signer)  # fmt: skip
            items.append({"seq": t.seq, "record": record.to_json()})
        for label in ("first upload", "same again"):
            before = rows(services)
            start = time.perf_counter()
            outcomes: dict[str, int] = {}
            for i in range(0, OFFLINE, BATCH):
                batch = {"terminal_certificate": t.certificate, "records": items[i : i + BATCH]}
                answer = client.post("/v1/transactions/batches", headers=t.headers, json=batch)
                for result in answer.json()["results"]:
                    outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
            elapsed = time.perf_counter() - start
            print(f"sync {OFFLINE} offline records, {label}: {elapsed:6.1f} s "
                  f"({OFFLINE / elapsed:.0f}/s) {outcomes}; new ledger rows "
                  f"{rows(services) - before}")  # fmt: skip
        services.engine.dispose()


if __name__ == "__main__":
    main()

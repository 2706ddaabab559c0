"""Verifier bundle size: 10 million cards at 1% revoked, measured; 1.4 billion extrapolated.

Builds 10 shards of 2**20 two-bit entries, revokes 1% of entries at random, signs each as
a Status List Token and all of them in one bundle (the real encoders), and reports the
bundle's size; then changes 1,000 random entries and reports the size of the delta (only
the shards that changed: with random indexes that is nearly every shard).

    .venv/bin/python bench/bench_bundle.py
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.bundle import encode_bundle, verify_bundle
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.signing import LocalSigner
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from cardsvc.core.trustlist import TrustedKey, TrustList

SHARD = 1 << 20
SHARDS = 10
REVOKED = 0.01
CHANGES = 1000
TARGET = 1_400_000_000
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


def main() -> None:
    rng = random.Random(8)
    root, status_key = signer(), signer()
    trust = TrustList(
        issuer="https://issuer.test",
        sequence=1,
        issued_at=NOW,
        expires_at=NOW + timedelta(days=7),
        keys=(
            TrustedKey(
                key=status_key.verifying_key(),
                purpose=KeyPurpose.STATUS_LIST,
                not_before=NOW - timedelta(days=1),
                not_after=NOW + timedelta(days=365),
            ),
        ),
    ).sign(root)
    uri = "https://issuer.test/v1/status-lists/{}".format
    lists = []
    for _ in range(SHARDS):
        lst = StatusList.new(SHARD)
        for idx in rng.sample(range(SHARD), int(SHARD * REVOKED)):
            lst.set(idx, Status.INVALID)
        lists.append(lst)

    def token(i: int) -> str:
        return encode_status_list_jwt(
            lists[i], sub=uri(i), iat=NOW, exp=NOW + timedelta(days=1), ttl=300,
            signer=status_key,
        )  # fmt: skip

    def bundle(version: int, base: int | None, shards: dict[str, str]) -> str:
        return encode_bundle(
            issuer="https://issuer.test", version=version, issued_at=NOW,
            expires_at=NOW + timedelta(hours=12), base=base, trust_list=trust,
            status_lists=shards, signer=status_key,
        )  # fmt: skip

    tick = time.perf_counter()
    full = bundle(1, None, {uri(i): token(i) for i in range(SHARDS)})
    built = time.perf_counter() - tick
    tick = time.perf_counter()
    held = verify_bundle(full, root=root.verifying_key(), now=NOW, leeway=timedelta(seconds=30))
    checked = time.perf_counter() - tick
    cards = SHARDS * SHARD
    per_card = len(full) / cards

    touched: set[int] = set()
    for _ in range(CHANGES):
        shard, idx = rng.randrange(SHARDS), rng.randrange(SHARD)
        lists[shard].set(idx, Status.SUSPENDED)
        touched.add(shard)
    delta = bundle(2, 1, {uri(i): token(i) for i in sorted(touched)})
    verify_bundle(
        delta, root=root.verifying_key(), now=NOW, leeway=timedelta(seconds=30), previous=held
    )
    target_shards = -(-TARGET // SHARD)
    # Random indexes: expected shards touched by CHANGES changes among target_shards.
    expected_touched = target_shards * (1 - (1 - 1 / target_shards) ** CHANGES)

    print(f"measured: {cards:,} entries in {SHARDS} shards of {SHARD:,}, {REVOKED:.0%} revoked")
    print(f"  full bundle      {len(full):>14,} bytes  ({per_card:.4f} B/card)")
    print(f"  encode {built:.2f} s, verify {checked:.2f} s (all shards decompressed)")
    print(
        f"  delta after {CHANGES:,} random changes: {len(touched)}/{SHARDS} shards, "
        f"{len(delta):,} bytes ({len(delta) / len(full):.0%} of full)"
    )
    print(f"extrapolated to {TARGET:,} cards ({target_shards:,} shards):")
    print(
        f"  full bundle      {per_card * TARGET:>14,.0f} bytes  "
        f"({per_card * TARGET / 2**20:,.0f} MiB)"
    )
    print(
        f"  delta after {CHANGES:,} random changes: ~{expected_touched:,.0f} shards, "
        f"~{expected_touched * len(full) / SHARDS / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    main()

"""Verifier bundle size: 10 million cards at 1% revoked, measured; 1.4 billion extrapolated.

Builds 10 shards of 2**20 two-bit entries, revokes 1% of entries at random, signs each as
a Status List Token and all of them in one bundle (the real encoders), and reports the
bundle's size; then changes 1,000 random entries and reports the size of the delta two
ways: shard-level (every changed shard's whole token: with random indexes that is nearly
every shard) and entry-level (each changed shard as an entry patch, ``status_patches``),
both verified on the full bundle. For comparison it also prints what the changed entries
would take as plain JSON ``[idx, status]`` pairs instead of the varint runs.

At 1.4 billion cards the entry-level delta is built with the real encoders too, on 1,000
random changes spread over the 1,336 shards; only the 32-byte digests are stand-ins (of
the same length), since building 1,336 real lists would take 350 MB.

    .venv/bin/python bench/bench_bundle.py
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.bundle import encode_bundle, verify_bundle
from cardsvc.core.keys import KeyPurpose, b64url_encode
from cardsvc.core.signing import LocalSigner
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from cardsvc.core.statuspatch import Run, diff_lists, encode_entries, list_digest, make_patch
from cardsvc.core.trustlist import TrustedKey, TrustList

SHARD = 1 << 20
SHARDS = 10
REVOKED = 0.01
CHANGES = 1000
TARGET = 1_400_000_000
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Issuer:
    """SHARDS shards at REVOKED, the keys and trust list that sign them (real encoders)."""

    root: LocalSigner
    status_key: LocalSigner
    trust: str
    lists: list[StatusList]

    @staticmethod
    def make(rng: random.Random) -> Issuer:
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
        lists = []
        for _ in range(SHARDS):
            lst = StatusList.new(SHARD)
            for idx in rng.sample(range(SHARD), int(SHARD * REVOKED)):
                lst.set(idx, Status.INVALID)
            lists.append(lst)
        return Issuer(root=root, status_key=status_key, trust=trust, lists=lists)

    def token(self, i: int) -> str:
        return encode_status_list_jwt(
            self.lists[i], sub=uri(i), iat=NOW, exp=NOW + timedelta(days=1), ttl=300,
            signer=self.status_key,
        )  # fmt: skip

    def bundle(
        self,
        version: int,
        base: int | None,
        shards: dict[str, str],
        patches: dict[str, dict[str, str]] | None = None,
    ) -> str:
        return encode_bundle(
            issuer="https://issuer.test", version=version, issued_at=NOW,
            expires_at=NOW + timedelta(hours=12), base=base, trust_list=self.trust,
            status_lists=shards, status_patches=patches, signer=self.status_key,
        )  # fmt: skip

    def change(self, rng: random.Random) -> tuple[list[StatusList], set[int]]:
        """CHANGES random entries suspended: (the lists before, the shards touched)."""
        before = [StatusList(bytearray(lst.to_bytes()), lst.bits, len(lst)) for lst in self.lists]
        touched: set[int] = set()
        for _ in range(CHANGES):
            shard, idx = rng.randrange(SHARDS), rng.randrange(SHARD)
            self.lists[shard].set(idx, Status.SUSPENDED)
            touched.add(shard)
        return before, touched


def uri(i: int) -> str:
    return f"https://issuer.test/v1/status-lists/{i}"


def entry_delta_at_target(issuer: Issuer, rng: random.Random) -> tuple[int, str]:
    """The entry-level delta at TARGET cards: (patches, token).

    The same encoders on CHANGES random changes over the target's shards; the digests
    stand in (same length) for 1,336 real lists (building them would take 350 MB).
    """
    target_shards = -(-TARGET // SHARD)
    spread: dict[int, set[int]] = defaultdict(set)
    for _ in range(CHANGES):
        spread[rng.randrange(target_shards)].add(rng.randrange(SHARD))
    stand_in = b64url_encode(list_digest(StatusList.new(8)))
    patches = {
        uri(shard): {
            "entries": b64url_encode(
                encode_entries([Run(idx, 1, Status.SUSPENDED) for idx in sorted(indexes)])
            ),
            "sha256": stand_in,
        }
        for shard, indexes in sorted(spread.items())
    }
    return len(spread), issuer.bundle(2, 1, {}, patches)


def main() -> None:
    rng = random.Random(8)
    issuer = Issuer.make(rng)
    root, lists, token, bundle = issuer.root, issuer.lists, issuer.token, issuer.bundle

    tick = time.perf_counter()
    full = bundle(1, None, {uri(i): token(i) for i in range(SHARDS)})
    built = time.perf_counter() - tick
    tick = time.perf_counter()
    held = verify_bundle(full, root=root.verifying_key(), now=NOW, leeway=timedelta(seconds=30))
    checked = time.perf_counter() - tick
    cards = SHARDS * SHARD
    per_card = len(full) / cards

    before, touched = issuer.change(rng)
    leeway = timedelta(seconds=30)
    delta = bundle(2, 1, {uri(i): token(i) for i in sorted(touched)})
    verify_bundle(delta, root=root.verifying_key(), now=NOW, leeway=leeway, previous=held)
    tick = time.perf_counter()
    patches = {uri(i): make_patch(before[i], lists[i]) for i in sorted(touched)}
    diffed = time.perf_counter() - tick
    entry_delta = bundle(2, 1, {}, patches)
    tick = time.perf_counter()
    patched = verify_bundle(
        entry_delta, root=root.verifying_key(), now=NOW, leeway=leeway, previous=held
    )
    applied = time.perf_counter() - tick
    assert all(
        patched.status_lists[uri(i)].status_list.to_bytes() == lists[i].to_bytes()
        for i in range(SHARDS)
    )
    pairs = [
        [run.start + k, run.status]
        for i in sorted(touched)
        for run in diff_lists(before[i], lists[i])
        for k in range(run.count)
    ]
    varint_bytes = sum(len(p["entries"]) for p in patches.values())
    json_pairs = len(json.dumps(pairs, separators=(",", ":")))

    target_shards = -(-TARGET // SHARD)
    # Random indexes: expected shards touched by CHANGES changes among target_shards.
    expected_touched = target_shards * (1 - (1 - 1 / target_shards) ** CHANGES)
    target_patches, target_delta = entry_delta_at_target(issuer, rng)

    print(f"measured: {cards:,} entries in {SHARDS} shards of {SHARD:,}, {REVOKED:.0%} revoked")
    print(f"  full bundle      {len(full):>14,} bytes  ({per_card:.4f} B/card)")
    print(f"  encode {built:.2f} s, verify {checked:.2f} s (all shards decompressed)")
    print(
        f"  delta after {CHANGES:,} random changes, shard-level: {len(touched)}/{SHARDS} "
        f"shards, {len(delta):,} bytes ({len(delta) / len(full):.0%} of full)"
    )
    print(
        f"  delta after {CHANGES:,} random changes, entry-level: {len(patches)} patches, "
        f"{len(entry_delta):,} bytes ({len(entry_delta) / len(full):.1%} of full); "
        f"diff {diffed * 1000:.0f} ms, verify + apply {applied * 1000:.0f} ms"
    )
    print(
        f"    the changed entries as varint runs (base64url): {varint_bytes:,} bytes; "
        f"as JSON [idx, status] pairs: {json_pairs:,} bytes"
    )
    print(f"extrapolated to {TARGET:,} cards ({target_shards:,} shards):")
    print(
        f"  full bundle      {per_card * TARGET:>14,.0f} bytes  "
        f"({per_card * TARGET / 2**20:,.0f} MiB)"
    )
    print(
        f"  delta after {CHANGES:,} random changes, shard-level: ~{expected_touched:,.0f} "
        f"shards, ~{expected_touched * len(full) / SHARDS / 2**20:,.0f} MiB"
    )
    print(
        f"  delta after {CHANGES:,} random changes, entry-level: {target_patches:,} patches, "
        f"{len(target_delta):,} bytes ({len(target_delta) / 2**10:,.0f} KiB, "
        f"{len(target_delta) / (per_card * TARGET):.2%} of full)"
    )


if __name__ == "__main__":
    main()

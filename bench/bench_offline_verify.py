"""Offline verify with status check next to a raw ES256 verify, in the same run.

    .venv/bin/python bench/bench_offline_verify.py [--repeats 9] [--seconds 0.25]

- ``OfflineVerifier.verify``: clock-rollback check, prefix, base45, COSE_Sign1, trust-list
  lookup by short kid, ES256, CWT claims, window, purpose, replay seen-set, bundle age,
  status lookup in a 131,072-entry shard of the bundle. Every call gets a fresh token (a
  ``jti`` is one-time: a repeated one would stop at "replayed" and skip the status check),
  drawn from a pool minted beforehand; the run fails if a verdict is not valid.
- Baseline: raw ES256 verify (``cryptography``) of one token's Sig_structure.
- ``verify_qr_token`` alone, for reference. Goal: offline verify >= 0.85 of raw.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import NOW, Issuer, qr_token
from gate import gate
from timing import median_seconds, print_table

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import SCHEME_PREFIX, Purpose, encode_qr_token, verify_qr_token
from cardsvc.core.verifier import OfflineVerifier, Outcome

ECDSA = ec.ECDSA(hashes.SHA256())
BASELINE = "raw ES256 verify, QR bytes (baseline)"
OFFLINE = "OfflineVerifier.verify (status check)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.25)
    parser.add_argument("--pool", type=int, default=0, help="tokens to mint (0: estimate)")
    args = parser.parse_args()

    issuer = Issuer.new()
    now, leeway = NOW + timedelta(seconds=10), timedelta(seconds=5)
    ecard = issuer.signer(KeyPurpose.ECARD)

    verifier = gate(issuer)

    def mint() -> str:
        return encode_qr_token(qr_token(Purpose.IDENTITY, jti=secrets.token_bytes(8)), ecard)

    text = mint()
    assert verifier.verify(text, purpose=Purpose.IDENTITY, now=now).valid
    msg = cose.decode_sign1(b45decode(text[len(SCHEME_PREFIX) :]))
    tbs = cose._to_be_signed(msg, b"")
    der = encode_dss_signature(
        int.from_bytes(msg.signature[:32]), int.from_bytes(msg.signature[32:])
    )
    key = ecard.verifying_key().public_key

    # Calibrate the pool from one quick measurement; verify calls = calibration + repeats.
    pool_size = args.pool or int(
        (args.repeats + 3) * args.seconds / _seconds_per_verify(verifier, mint, now) * 1.5
    )
    print(f"minting {pool_size:,} one-time tokens ...", flush=True)
    pool: Iterator[str] = iter([mint() for _ in range(pool_size)])
    outcomes: dict[Outcome, int] = {}

    def offline() -> None:
        verdict = verifier.verify(next(pool), purpose=Purpose.IDENTITY, now=now)
        outcomes[verdict.outcome] = outcomes.get(verdict.outcome, 0) + 1

    trust_list = issuer.trust_list
    medians = median_seconds(
        {
            BASELINE: lambda: key.verify(der, tbs, ECDSA),
            OFFLINE: offline,
            "verify_qr_token alone": lambda: verify_qr_token(
                text, trust_list=trust_list, now=now, leeway=leeway, purpose=Purpose.IDENTITY
            ),
        },
        repeats=args.repeats,
        seconds=args.seconds,
    )
    if set(outcomes) != {Outcome.VALID}:
        raise SystemExit(f"not every verdict was valid: {outcomes}")
    print(f"median of {args.repeats} interleaved repeats; ratio = baseline time / path time")
    print_table(medians, BASELINE)
    ratio = medians[BASELINE] / medians[OFFLINE]
    print(f"{sum(outcomes.values()):,} offline verdicts, all valid")
    print(f"offline verify with status check / raw ES256 verify: {ratio:.3f} (goal >= 0.85)")


def _seconds_per_verify(verifier: OfflineVerifier, mint: object, now: object) -> float:
    import time

    assert callable(mint)
    texts = [mint() for _ in range(300)]
    start = time.perf_counter()
    for text in texts:
        verifier.verify(text, purpose=Purpose.IDENTITY, now=now)  # type: ignore[arg-type]
    return (time.perf_counter() - start) / len(texts)


if __name__ == "__main__":
    main()

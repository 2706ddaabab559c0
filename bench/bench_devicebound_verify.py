"""Device-bound offline QR (SSC2) verify next to raw ES256 verifies, and its QR sizes.

    .venv/bin/python bench/bench_devicebound_verify.py [--repeats 9] [--seconds 0.25]

- ``OfflineVerifier.verify`` on ``SSC2:`` codes: prefix, base45, the wrapper's COSE_Sign1
  and payload, the credential's COSE_Sign1, trust-list lookup, the issuer's ES256
  signature, the claims (device point decompressed), the device hint, the device's ES256
  signature, purpose, slot, the replay seen-set and the status lookup in a 131,072-entry
  shard. Every call gets a fresh code (another counter: one (e-card, slot, counter) is
  accepted once), drawn from a pool made beforehand; the run fails if one is not valid.
- ``verify_device_bound`` alone (no state), for reference.
- Baselines: one raw ES256 verify (``cryptography``), and two (the credential's and the
  wrapper's signatures, the least any device-bound verify must do).
- QR version at error correction M for a typical identity and transport code, as
  ``qrcode`` fits it (mixed segments) and in one alphanumeric segment (the worst case).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import qrcode
import qrcode.constants
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import NOW, Issuer, new_signer
from gate import gate
from timing import median_seconds, print_table

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode
from cardsvc.core.credential import (
    CompactCredential,
    compressed_point,
    encode_compact_credential,
)
from cardsvc.core.devicebound import SCHEME_PREFIX, SLOT_SECONDS, present, verify_device_bound
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import Attribute, Purpose
from cardsvc.core.verifier import Outcome

ECDSA = ec.ECDSA(hashes.SHA256())
ONE_RAW = "raw ES256 verify x1 (baseline)"
TWO_RAW = "raw ES256 verify x2 (credential + device)"
TWO_RAW_FRESH = "raw x2, device key decoded from 33 bytes"
OFFLINE = "OfflineVerifier.verify SSC2 (status check)"
ATTRIBUTES = {
    # A four-character name: longer than most (two or three characters).
    Purpose.IDENTITY: {Attribute.NAME: "欧阳娜娜", Attribute.ID_NO: "11010519491231002X"},
    Purpose.TRANSPORT: {Attribute.CONCESSION: 1, Attribute.CONCESSION_UNTIL: date(2030, 6, 30)},
}


def qr_version(text: str, *, optimize: int) -> int:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text, optimize=optimize)
    code.make(fit=True)
    return int(code.version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.25)
    parser.add_argument("--pool", type=int, default=60_000, help="codes to make beforehand")
    args = parser.parse_args()

    issuer = Issuer.new()
    phone = new_signer()
    # Mid-slot, so the whole run stays in one slot's acceptance window.
    now = datetime.fromtimestamp(
        (int((NOW + timedelta(seconds=10)).timestamp()) // SLOT_SECONDS) * SLOT_SECONDS + 15, UTC
    )
    verifier = gate(issuer)

    def credential(purpose: Purpose, **kw: object) -> bytes:
        fields: dict[str, object] = {
            "issuer": "https://issuer.test",
            "purpose": purpose,
            "ecard_ref": b"\x07" * 8,
            "status_shard": 3,
            "status_idx": 101_010,
            "device_point": compressed_point(phone.verifying_key()),
            "expires_at": NOW + timedelta(days=7),
            "attributes": ATTRIBUTES[purpose],
        }
        fields.update(kw)
        return encode_compact_credential(
            CompactCredential(**fields),  # type: ignore[arg-type]
            issuer.signer(KeyPurpose.ECARD),
        )

    print("QR size at error correction M (per-slot counter 0; shard 3, index 101010):")
    print(f"{'code':<38} {'bytes':>5} {'chars':>5} {'version':>8} {'1 segment':>10}")
    largest = {"status_shard": 65_535, "status_idx": 2**32 - 1}
    for purpose in (Purpose.IDENTITY, Purpose.TRANSPORT):
        for label, kw in (("", {}), (" (shard 65535, index 2^32-1)", largest)):
            text = present(credential(purpose, **kw), phone, purpose=purpose, now=now, counter=0)
            size = len(b45decode(text[len(SCHEME_PREFIX) :]))
            name = purpose.name.lower() + label
            print(
                f"{name:<38} {size:>5} {len(text):>5} {qr_version(text, optimize=20):>8} "
                f"{qr_version(text, optimize=0):>10}"
            )

    cred = credential(Purpose.TRANSPORT)
    text = present(cred, phone, purpose=Purpose.TRANSPORT, now=now, counter=0)
    assert verifier.verify(text, purpose=Purpose.TRANSPORT, now=now).valid
    wrapper = cose.decode_sign1(b45decode(text[len(SCHEME_PREFIX) :]))
    inner = cose.decode_sign1(cred)
    checks = []
    for msg, key in (
        (inner, issuer.signer(KeyPurpose.ECARD).verifying_key().public_key),
        (wrapper, phone.verifying_key().public_key),
    ):
        der = encode_dss_signature(
            int.from_bytes(msg.signature[:32]), int.from_bytes(msg.signature[32:])
        )
        checks.append((key, der, cose._to_be_signed(msg, b"")))
    (k1, d1, t1), (k2, d2, t2) = checks

    def two_raw() -> None:
        k1.verify(d1, t1, ECDSA)
        k2.verify(d2, t2, ECDSA)

    point = compressed_point(phone.verifying_key())

    def two_raw_fresh() -> None:
        # The floor of any verifier that takes the device key from the code: decompress the
        # point, then verify with a key OpenSSL has not seen before.
        k1.verify(d1, t1, ECDSA)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).verify(d2, t2, ECDSA)

    print(f"\nmaking {args.pool:,} one-time codes ...", flush=True)
    pool: Iterator[str] = iter(
        [present(cred, phone, purpose=Purpose.TRANSPORT, now=now, counter=i)
         for i in range(1, args.pool + 1)]
    )  # fmt: skip
    outcomes: dict[Outcome, int] = {}

    def offline() -> None:
        verdict = verifier.verify(next(pool), purpose=Purpose.TRANSPORT, now=now)
        outcomes[verdict.outcome] = outcomes.get(verdict.outcome, 0) + 1

    trust_list = issuer.trust_list
    leeway = timedelta(seconds=5)
    medians = median_seconds(
        {
            ONE_RAW: lambda: k1.verify(d1, t1, ECDSA),
            TWO_RAW: two_raw,
            TWO_RAW_FRESH: two_raw_fresh,
            OFFLINE: offline,
            "verify_device_bound alone": lambda: verify_device_bound(
                text, trust_list=trust_list, now=now, leeway=leeway, purpose=Purpose.TRANSPORT
            ),
        },
        repeats=args.repeats,
        seconds=args.seconds,
    )
    if set(outcomes) != {Outcome.VALID}:
        raise SystemExit(f"not every verdict was valid: {outcomes}")
    print(f"median of {args.repeats} interleaved repeats; ratio = baseline time / path time")
    print_table(medians, ONE_RAW)
    print(f"{sum(outcomes.values()):,} offline verdicts, all valid")
    two, one = medians[TWO_RAW] / medians[OFFLINE], medians[ONE_RAW] / medians[OFFLINE]
    fresh = medians[TWO_RAW_FRESH] / medians[OFFLINE]
    print(f"device-bound offline verify / two raw ES256 verifies: {two:.3f}; / one: {one:.3f}")
    print(f"device-bound offline verify / two raw with the device key decoded: {fresh:.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: COSE_Sign1 verification against a raw ES256 verify, in the same run.

    .venv/bin/python bench/bench_cose.py [--repeats 9] [--seconds 0.25]

Three paths verify the same token (a ~250-byte CWT-like payload, 8-byte kid):

* ``raw``: ``cryptography`` ES256 verify of the precomputed Sig_structure with a
  precomputed DER signature, the floor any COSE implementation pays;
* ``cose``: ``decode_sign1`` + ``verify_sign1`` on the CBOR bytes;
* ``qr``: ``b45decode`` + ``decode_sign1`` + ``verify_sign1`` on the QR text.

Each repeat times a loop with ``time.perf_counter``; the paths take turns so that machine
noise hits them alike. The script prints the median rate of each path and its ratio to
``raw`` (goal: ``qr`` at 0.85 or more). It makes no assertion about time: read the numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from timing import median_seconds

from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.cose import decode_sign1, sign1, verify_sign1
from cardsvc.core.signing import LocalSigner

GOAL_RATIO = 0.85


def _payload() -> bytes:
    """A CWT claims set of about 250 bytes, like an e-card QR token."""
    claims = {
        1: "https://cardsvc.example.gov.cn/issuer",  # iss
        2: "ecard:4403-0000-1234-5678",  # sub
        4: 1_893_456_000,  # exp
        6: 1_767_225_600,  # iat
        7: bytes(range(16)),  # cti
        -70001: {"name": "ZHANG San", "card": "A1234567890", "region": "440300"},
        -70002: {"status_list": {"idx": 123_456, "uri": "https://cardsvc.example/sl/7"}},
    }
    payload = cbor2.dumps(claims)
    pad = 250 - len(payload)
    if pad > 2:
        claims[-70003] = "x" * (pad - 4)
        payload = cbor2.dumps(claims)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per path")
    parser.add_argument("--seconds", type=float, default=0.25, help="target time per repeat")
    args = parser.parse_args()

    private_key = ec.derive_private_key(0x5EED_C05E_0001, ec.SECP256R1())
    public_key = private_key.public_key()
    payload = _payload()
    token = sign1(payload, LocalSigner(private_key), kid=b"kid-0001")
    text = b45encode(token)

    msg = decode_sign1(token)
    # The baseline's input is built independently of cardsvc.core.cose.
    tbs = cbor2.dumps(["Signature1", msg.protected_bytes, b"", msg.payload], canonical=True)
    der = encode_dss_signature(
        int.from_bytes(msg.signature[:32]), int.from_bytes(msg.signature[32:])
    )
    ecdsa = ec.ECDSA(hashes.SHA256())

    # Same bytes on every path: check them once before timing anything.
    public_key.verify(der, tbs, ecdsa)
    assert verify_sign1(decode_sign1(token), public_key) == payload
    assert verify_sign1(decode_sign1(b45decode(text)), public_key) == payload

    paths: dict[str, Callable[[], object]] = {
        "raw ES256 verify (baseline)": lambda: public_key.verify(der, tbs, ecdsa),
        "decode_sign1 + verify_sign1": lambda: verify_sign1(decode_sign1(token), public_key),
        "b45decode + decode + verify": lambda: verify_sign1(
            decode_sign1(b45decode(text)), public_key
        ),
        "b45decode alone": lambda: b45decode(text),
        "decode_sign1 alone": lambda: decode_sign1(token),
    }
    medians = median_seconds(paths, repeats=args.repeats, seconds=args.seconds)
    baseline = medians["raw ES256 verify (baseline)"]
    print(
        f"payload {len(payload)} B, COSE_Sign1 {len(token)} B, base45 {len(text)} chars; "
        f"median of {args.repeats} repeats"
    )
    print(f"{'path':<30} {'ops/s':>10} {'us/op':>8} {'ratio':>6}")
    for name, seconds in medians.items():
        ratio = f"{baseline / seconds:6.3f}" if "alone" not in name else ""
        print(f"{name:<30} {1 / seconds:>10,.0f} {seconds * 1e6:>8.2f} {ratio:>6}")
    full = baseline / medians["b45decode + decode + verify"]
    verdict = "meets" if full >= GOAL_RATIO else "is below"
    print(f"full QR path ratio {full:.3f} {verdict} the goal of {GOAL_RATIO}")


if __name__ == "__main__":
    main()

"""Benchmark: the SM2-with-SM3 suite against ES256, in one run.

    .venv/bin/python bench/bench_sm2.py [--repeats 9] [--seconds 0.25]   # needs cardsvc[sm]

* ``verify_qr_token`` with an SM2 key against a raw SM2 verify (tongsuopy, DER signature
  precomputed) of the very same Sig_structure bytes. Goal: >= 0.85 (SM2 verifies more
  slowly than P-256, so the share of our Python is smaller).
* Cost per token, SM2 against ES256: ``verify_qr_token`` and minting (``encode_qr_token``),
  the same claims under each suite.
* QR version at ECC M of every purpose's typical token (SSC1 QR token and SSC2
  device-bound code) signed with SM2, next to ES256, with the 6-character issuer of the
  format tests and with a URL issuer of 21 characters (the demo's). Goal: <= 10 for the
  QR tokens (device-bound codes carry a credential and need 12-13 with ES256 already).

Paths take turns within each repeat (timing.py); medians and ratios from the same run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import qrcode
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import NOW, TYPICAL, Issuer, new_signer, qr_token
from timing import median_seconds, print_table

from cardsvc.core import cose, sm2
from cardsvc.core.base45 import b45decode
from cardsvc.core.credential import CompactCredential, compressed_point, encode_compact_credential
from cardsvc.core.devicebound import present
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import SCHEME_PREFIX, Purpose, encode_qr_token, verify_qr_token
from cardsvc.core.signing import Signer, Sm2Signer
from cardsvc.core.sm2 import Sm2PrivateKey
from cardsvc.core.trustlist import TrustedKey, TrustList

GOAL_RATIO = 0.85
GOAL_VERSION = 10
ECDSA = ec.ECDSA(hashes.SHA256())


def qr_version(text: str) -> int:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    version: int = qr.version
    return version


def der_of(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))


def sm2_trust_list(issuer: Issuer, signer: Sm2Signer) -> TrustList:
    entry = TrustedKey(
        key=signer.verifying_key(),
        purpose=KeyPurpose.ECARD,
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=3650),
    )
    return TrustList(
        issuer=issuer.trust_list.issuer,
        sequence=1,
        issued_at=NOW,
        expires_at=NOW + timedelta(days=7),
        keys=(*issuer.trust_list.keys, entry),
    )


def device_code(purpose: Purpose, signer: Signer, iss: str) -> str:
    device = new_signer()
    credential = CompactCredential(
        issuer=iss,
        purpose=purpose,
        ecard_ref=b"\x01" * 8,
        status_shard=3,
        status_idx=101_010,
        device_point=compressed_point(device.verifying_key()),
        expires_at=NOW + timedelta(days=7),
        attributes={k: v for k, v in TYPICAL[purpose].items() if k.name != "PHOTO_REF"},
    )
    return present(
        encode_compact_credential(credential, signer), device, purpose=purpose, now=NOW, counter=0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.25)
    args = parser.parse_args()
    if not sm2.available():
        raise SystemExit("SM2 needs the extra: pip install 'cardsvc[sm]'")

    issuer = Issuer.new()
    es_signer = issuer.signer(KeyPurpose.ECARD)
    sm_signer = Sm2Signer(Sm2PrivateKey.generate())
    trust_list = sm2_trust_list(issuer, sm_signer)
    now, leeway = NOW + timedelta(seconds=10), timedelta(seconds=5)
    token = qr_token(Purpose.IDENTITY)

    es_text = encode_qr_token(token, es_signer)
    sm_text = encode_qr_token(token, sm_signer)
    # Raw baselines over the very bytes verify_qr_token checks, built outside it.
    es_msg = cose.decode_sign1(b45decode(es_text[len(SCHEME_PREFIX) :]))
    sm_msg = cose.decode_sign1(b45decode(sm_text[len(SCHEME_PREFIX) :]))
    es_tbs, sm_tbs = cose._to_be_signed(es_msg, b""), cose._to_be_signed(sm_msg, b"")
    es_der = der_of(es_msg.signature)
    es_key = es_signer.private_key.public_key()
    from tongsuopy.crypto import hashes as t_hashes
    from tongsuopy.crypto.asymciphers import ec as t_ec

    sm_key = t_ec.EllipticCurvePublicKey.from_encoded_point(
        t_ec.SM2(), sm_signer.verifying_key().point()
    )
    sm_der = der_of(sm_msg.signature)
    sm_alg = t_ec.ECDSA(t_hashes.SM3())
    es_key.verify(es_der, es_tbs, ECDSA)
    sm_key.verify(sm_der, sm_tbs, sm_alg)
    assert verify_qr_token(sm_text, trust_list=trust_list, now=now, leeway=leeway) == token
    assert verify_qr_token(es_text, trust_list=trust_list, now=now, leeway=leeway) == token

    paths: dict[str, Callable[[], object]] = {
        "raw SM2 verify, QR bytes (baseline)": lambda: sm_key.verify(sm_der, sm_tbs, sm_alg),
        "verify_qr_token, SM2": lambda: verify_qr_token(
            sm_text, trust_list=trust_list, now=now, leeway=leeway
        ),
        "raw ES256 verify, QR bytes": lambda: es_key.verify(es_der, es_tbs, ECDSA),
        "verify_qr_token, ES256": lambda: verify_qr_token(
            es_text, trust_list=trust_list, now=now, leeway=leeway
        ),
        "encode_qr_token (mint), SM2": lambda: encode_qr_token(token, sm_signer),
        "encode_qr_token (mint), ES256": lambda: encode_qr_token(token, es_signer),
    }
    medians = median_seconds(paths, repeats=args.repeats, seconds=args.seconds)
    print(f"median of {args.repeats} interleaved repeats; ratio = baseline time / path time")
    print_table(medians, "raw SM2 verify, QR bytes (baseline)")
    ratio = medians["raw SM2 verify, QR bytes (baseline)"] / medians["verify_qr_token, SM2"]
    verdict = "meets" if ratio >= GOAL_RATIO else "is below"
    print(f"verify_qr_token SM2 / raw SM2 verify of the same bytes: {ratio:.3f}", end=" ")
    print(f"({verdict} the goal of {GOAL_RATIO})")
    es_ratio = medians["raw ES256 verify, QR bytes"] / medians["verify_qr_token, ES256"]
    print(f"verify_qr_token ES256 / raw ES256 verify (same run, for reference): {es_ratio:.3f}")
    verify_cost = medians["verify_qr_token, SM2"] / medians["verify_qr_token, ES256"]
    mint_cost = medians["encode_qr_token (mint), SM2"] / medians["encode_qr_token (mint), ES256"]
    print(f"cost per token, SM2 / ES256: verify {verify_cost:.2f}x, mint {mint_cost:.2f}x")
    print()
    print(f"{'purpose':<10} {'iss':<22} {'SSC1 chars':>10} {'ES256 v':>7} {'SM2 v':>5}"
          f" {'SSC2 chars':>10} {'ES256 v':>7} {'SM2 v':>5}")  # fmt: skip
    worst = 0
    for iss in ("cn-ssc", "http://127.0.0.1:8000"):
        for purpose in Purpose:
            t = qr_token(purpose, issuer=iss)
            es, sm = encode_qr_token(t, es_signer), encode_qr_token(t, sm_signer)
            es2 = device_code(purpose, es_signer, iss)
            sm2_code = device_code(purpose, sm_signer, iss)
            versions = [qr_version(x) for x in (es, sm, es2, sm2_code)]
            if iss == "cn-ssc":
                worst = max(worst, versions[1])
            print(
                f"{purpose.name.lower():<10} {iss:<22} {len(sm):>10} {versions[0]:>7} "
                f"{versions[1]:>5} {len(sm2_code):>10} {versions[2]:>7} {versions[3]:>5}"
            )
    verdict = "meets" if worst <= GOAL_VERSION else "misses"
    print(f"largest SM2 QR token (SSC1) version, format tests' issuer: {worst}", end=" ")
    print(f"({verdict} the goal of <= {GOAL_VERSION})")


if __name__ == "__main__":
    main()

"""Benchmark the signed formats, each next to a raw ES256 verify of the same bytes.

    .venv/bin/python bench/bench_formats.py [--repeats 9] [--seconds 0.25]

- QR token: ``verify_qr_token`` (prefix, base45, COSE_Sign1, trust-list lookup by short
  kid, ES256, CWT claims, validity window) vs raw ES256 verify of its Sig_structure.
  Goal: >= 0.85 of raw.
- Card document: ``verify_card_document`` vs raw ES256 verify of its signing input, with
  pyjwt's decode alone for reference.
- Token length and QR version at ECC M for each purpose's typical token. Goal: <= 10.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import jwt
import qrcode
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import NOW, Issuer, card_document, qr_token
from timing import median_seconds, print_table

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode
from cardsvc.core.carddoc import verify_card_document
from cardsvc.core.keys import KeyPurpose, b64url_decode
from cardsvc.core.qrtoken import SCHEME_PREFIX, Purpose, encode_qr_token, verify_qr_token

ECDSA = ec.ECDSA(hashes.SHA256())


def der_of(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))


def qr_version(text: str) -> int:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    version: int = qr.version
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.25)
    args = parser.parse_args()

    issuer = Issuer.new()
    now, leeway = NOW + timedelta(seconds=10), timedelta(seconds=5)

    # QR token and its raw baseline over the very same Sig_structure bytes.
    text = encode_qr_token(qr_token(Purpose.IDENTITY), issuer.signer(KeyPurpose.ECARD))
    msg = cose.decode_sign1(b45decode(text[len(SCHEME_PREFIX) :]))
    tbs = cose._to_be_signed(msg, b"")
    qr_der = der_of(msg.signature)
    qr_key = issuer.signer(KeyPurpose.ECARD).verifying_key().public_key
    qr_key.verify(qr_der, tbs, ECDSA)

    # Card document, raw baseline over its signing input, and pyjwt alone.
    doc = card_document().sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    signing_input = doc.rsplit(".", 1)[0].encode()
    doc_der = der_of(b64url_decode(doc.rsplit(".", 1)[1]))
    doc_key = issuer.signer(KeyPurpose.CARD_DOCUMENT).verifying_key().public_key
    doc_key.verify(doc_der, signing_input, ECDSA)
    trust_list = issuer.trust_list

    medians = median_seconds(
        {
            "raw ES256 verify, QR bytes (baseline)": lambda: qr_key.verify(qr_der, tbs, ECDSA),
            "verify_qr_token": lambda: verify_qr_token(
                text, trust_list=trust_list, now=now, leeway=leeway
            ),
            "raw ES256 verify, card document bytes": lambda: doc_key.verify(
                doc_der, signing_input, ECDSA
            ),
            "verify_card_document": lambda: verify_card_document(
                doc, trust_list=trust_list, now=NOW, leeway=leeway
            ),
            "pyjwt decode alone (card document)": lambda: jwt.decode(
                doc, doc_key, algorithms=["ES256"], options={"verify_exp": False}
            ),
        },
        repeats=args.repeats,
        seconds=args.seconds,
    )
    print(f"median of {args.repeats} interleaved repeats; ratio = baseline time / path time")
    print_table(medians, "raw ES256 verify, QR bytes (baseline)")
    qr_ratio = medians["raw ES256 verify, QR bytes (baseline)"] / medians["verify_qr_token"]
    doc_ratio = medians["raw ES256 verify, card document bytes"] / medians["verify_card_document"]
    jwt_ratio = (
        medians["raw ES256 verify, card document bytes"]
        / medians["pyjwt decode alone (card document)"]
    )
    print(f"QR token verify / raw verify of the same bytes: {qr_ratio:.3f} (goal >= 0.85)")
    print(f"card document verify / raw: {doc_ratio:.3f}; pyjwt decode alone / raw: {jwt_ratio:.3f}")
    print()
    print(f"{'purpose':<10} {'chars':>5} {'QR version (ECC M)':>19}")
    for purpose in Purpose:
        encoded = encode_qr_token(qr_token(purpose), issuer.signer(KeyPurpose.ECARD))
        print(f"{purpose.name.lower():<10} {len(encoded):>5} {qr_version(encoded):>19}")
    print("goal: every purpose at version 10 or less")


if __name__ == "__main__":
    main()

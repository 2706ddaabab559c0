"""CWT claims and QR tokens: verify_qr_token (SSC1:) and verify_device_bound (SSC2:).

Mode 0 signs the fuzz bytes as the CWT claims with the issuer's real e-card key, so the
claims parser (QrToken.from_cbor_claims) sees every input past the signature check.
"""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core import cose
    from cardsvc.core.base45 import b45encode
    from cardsvc.core.devicebound import verify_device_bound
    from cardsvc.core.errors import CoreError
    from cardsvc.core.keys import KeyPurpose, short_kid
    from cardsvc.core.qrtoken import SCHEME_PREFIX, verify_qr_token
    from fuzz.common import LEEWAY, NOW, SIGNERS, TRUST_LIST, fuzz

SIGNER = SIGNERS[KeyPurpose.ECARD]


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        message = cose.sign1(body, SIGNER, kid=short_kid(SIGNER.kid))
        text = SCHEME_PREFIX + b45encode(message)
        verify_qr_token(text, trust_list=TRUST_LIST, now=NOW, leeway=LEEWAY)
    elif mode == b"\x01":
        verify_device_bound(
            "SSC2:" + body.decode("latin-1"), trust_list=TRUST_LIST, now=NOW, leeway=LEEWAY
        )
    else:
        verify_qr_token(
            SCHEME_PREFIX + body.decode("latin-1"), trust_list=TRUST_LIST, now=NOW, leeway=LEEWAY
        )


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

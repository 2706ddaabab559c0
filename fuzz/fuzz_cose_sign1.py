"""COSE_Sign1 and the deterministic CBOR profile: decode_sign1, verify_sign1, decode_cbor."""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core import cose
    from cardsvc.core.errors import CoreError
    from cardsvc.core.keys import KeyPurpose
    from fuzz.common import SIGNERS, fuzz

KEY = SIGNERS[KeyPurpose.ECARD].verifying_key().public_key


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        item = cose.decode_cbor(body, what="payload")
        # What the decoder accepts is deterministic: it encodes back to the same bytes.
        if cose.encode_cbor(item) != body:
            raise AssertionError(f"decode_cbor accepted a non-deterministic encoding {body!r}")
        return
    message = cose.decode_sign1(body)
    cose.verify_sign1(message, KEY)


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

"""JWS: verify_jws on any text, and the documents it carries (trust lists, card documents).

Modes 0 and 1 sign the fuzz bytes as the payload (a trust list under the root key, a
card document under the card-document key) to reach the claims parsers.
"""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.carddoc import CARD_DOCUMENT_TYP as CARD_TYP
    from cardsvc.core.carddoc import verify_card_document
    from cardsvc.core.errors import CoreError
    from cardsvc.core.jws import verify_jws
    from cardsvc.core.keys import KeyPurpose
    from cardsvc.core.trustlist import TRUST_LIST_TYP as TRUST_TYP
    from cardsvc.core.trustlist import TrustAnchor
    from fuzz.common import LEEWAY, NOW, ROOT, SIGNERS, TRUST_LIST, fuzz, jws_header, jws_over

CARD_SIGNER = SIGNERS[KeyPurpose.CARD_DOCUMENT]
ROOT_KEY = ROOT.verifying_key()


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        TrustAnchor(ROOT_KEY).accept(
            jws_over(body, ROOT, jws_header(TRUST_TYP, ROOT)), now=NOW, leeway=LEEWAY
        )
    elif mode == b"\x01":
        token = jws_over(body, CARD_SIGNER, jws_header(CARD_TYP, CARD_SIGNER))
        verify_card_document(token, trust_list=TRUST_LIST, now=NOW, leeway=LEEWAY)
    else:
        verify_jws(body.decode("latin-1"), typ=frozenset({None, "JWT"}), key_for=lambda _: ROOT_KEY)


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

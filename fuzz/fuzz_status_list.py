"""Status lists: the zlib, JSON and CBOR forms, and a Status List Token past its signature."""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.errors import CoreError
    from cardsvc.core.jws import strict_json_object
    from cardsvc.core.keys import KeyPurpose
    from cardsvc.core.statuslist import JWT_TYP, StatusList, verify_status_list_token
    from fuzz.common import LEEWAY, NOW, SIGNERS, TRUST_LIST, fuzz, jws_header, jws_over

SIGNER = SIGNERS[KeyPurpose.STATUS_LIST]


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        token = jws_over(body, SIGNER, jws_header(JWT_TYP, SIGNER))
        verify_status_list_token(
            token, trust_list=TRUST_LIST, expected_sub=None, now=NOW, leeway=LEEWAY
        )
    elif mode == b"\x01":
        StatusList.from_json_view(strict_json_object(body, what="status list"))
    elif mode == b"\x02":
        StatusList.from_cbor_view(body)
    elif mode:
        lst = StatusList.from_compressed(body, bits=mode[0] % 9, max_entries=1 << 20)
        for index in (0, len(lst) - 1):
            if 0 <= index < len(lst):
                lst.get(index)


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

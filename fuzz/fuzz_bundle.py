"""Verifier bundles: verify_bundle on any text, and on signed claims the fuzzer chose.

Mode 0 signs the fuzz bytes as the whole claims set; mode 1 lays a JSON object from the
fuzzer over the claims of a good full bundle (the real trust list inside), so the shard,
patch and rollback checks see hostile values next to valid ones.
"""

import json
from datetime import timedelta

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.bundle import BUNDLE_TYP, verify_bundle
    from cardsvc.core.errors import CoreError
    from cardsvc.core.jws import strict_json_object
    from cardsvc.core.keys import KeyPurpose
    from cardsvc.core.statuslist import StatusList, encode_status_list_jwt
    from fuzz.common import (
        ISSUER,
        LEEWAY,
        NOW,
        ROOT,
        SIGNERS,
        TRUST_LIST_JWS,
        fuzz,
        jws_header,
        jws_over,
    )

SIGNER = SIGNERS[KeyPurpose.STATUS_LIST]
ROOT_KEY = ROOT.verifying_key()
HEADER = jws_header(BUNDLE_TYP, SIGNER)
SHARD = f"{ISSUER}/v1/status-lists/0"
GOOD = {
    "iss": ISSUER,
    "ver": 2,
    "iat": int(NOW.timestamp()) - 60,
    "exp": int(NOW.timestamp()) + 3600,
    "base": None,
    "trust_list": TRUST_LIST_JWS,
    "status_lists": {
        SHARD: encode_status_list_jwt(
            StatusList.new(1024),
            sub=SHARD,
            iat=NOW - timedelta(minutes=1),
            exp=NOW + timedelta(hours=1),
            ttl=300,
            signer=SIGNER,
        )
    },
}
HELD = verify_bundle(jws_over(json.dumps(GOOD).encode(), SIGNER, HEADER), root=ROOT_KEY,
                     now=NOW, leeway=LEEWAY)  # fmt: skip


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        token = jws_over(body, SIGNER, HEADER)
    elif mode in (b"\x01", b"\x02"):
        claims = GOOD | strict_json_object(body, what="fuzz claims")
        token = jws_over(json.dumps(claims).encode(), SIGNER, HEADER)
    else:
        token = body.decode("latin-1")
    previous = HELD if mode == b"\x02" else None
    verify_bundle(token, root=ROOT_KEY, now=NOW, leeway=LEEWAY, previous=previous)


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

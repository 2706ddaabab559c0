"""Verifier bundles: verify_bundle on any text, and on signed claims the fuzzer chose.

Mode 0 signs the fuzz bytes as the whole claims set; modes 1 and 2 lay claims drawn from
the fuzz input over those of a good full bundle (the real trust list inside), so the
shard, patch and rollback checks see hostile values next to valid ones; mode 2 verifies
it as a delta on a held bundle.
"""

import json
from datetime import timedelta

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.bundle import BUNDLE_TYP, verify_bundle
    from cardsvc.core.errors import CoreError
    from cardsvc.core.keys import KeyPurpose, b64url_encode
    from cardsvc.core.statuslist import JWT_TYP as STATUS_TYP
    from cardsvc.core.statuslist import StatusList, encode_status_list_jwt
    from fuzz.common import (
        ISSUER,
        LEEWAY,
        NOW,
        ROOT,
        SIGNERS,
        TRUST_LIST_JWS,
        fuzz,
        json_value,
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


CLAIMS = ("iss", "ver", "iat", "exp", "base", "status_lists", "status_patches", "x")


def claim_value(fdp: atheris.FuzzedDataProvider) -> object:
    """Any JSON value, or a shard map / patch map of the right shape with fuzz inside."""
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        return json_value(fdp)
    uri = SHARD if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(40)
    if kind == 1:
        return {uri: jws_over(fdp.ConsumeBytes(200), SIGNER, jws_header(STATUS_TYP, SIGNER))}
    entries = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    digest = fdp.ConsumeBytes(32)
    return {uri: {"entries": b64url_encode(entries), "sha256": b64url_encode(digest)}}


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        token = jws_over(body, SIGNER, HEADER)
    elif mode in (b"\x01", b"\x02"):
        fdp = atheris.FuzzedDataProvider(body)
        claims = dict(GOOD)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            name = CLAIMS[fdp.ConsumeIntInRange(0, len(CLAIMS) - 1)]
            claims[name] = claim_value(fdp)
        token = jws_over(json.dumps(claims).encode(), SIGNER, HEADER)
    else:
        token = body.decode("latin-1")
    previous = HELD if mode == b"\x02" else None
    verify_bundle(token, root=ROOT_KEY, now=NOW, leeway=LEEWAY, previous=previous)


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

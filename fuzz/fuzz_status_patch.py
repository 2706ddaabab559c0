"""Status patches: decode_entries on any bytes, parse_patch and apply_patch on a held list."""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.errors import CoreError
    from cardsvc.core.jws import strict_json_object
    from cardsvc.core.keys import b64url_encode
    from cardsvc.core.statuslist import StatusList
    from cardsvc.core.statuspatch import apply_patch, decode_entries, parse_patch
    from fuzz.common import fuzz, json_value

HELD = StatusList.new(4096, bits=2)


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        decode_entries(body)
        return
    if mode == b"\x01":
        patch = strict_json_object(body, what="patch")
    else:  # the right shape, hostile content: libFuzzer rarely mutates its way to JSON
        fdp = atheris.FuzzedDataProvider(body)
        entries = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        patch = {"entries": b64url_encode(entries), "sha256": json_value(fdp)}
        if fdp.ConsumeBool():
            patch["sha256"] = b64url_encode(fdp.ConsumeBytes(32))
    runs, digest = parse_patch(patch)
    apply_patch(HELD, runs, digest, uri="https://issuer.test/v1/status-lists/0")


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

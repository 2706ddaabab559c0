"""Status patches: decode_entries on any bytes, parse_patch and apply_patch on a held list."""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.errors import CoreError
    from cardsvc.core.jws import strict_json_object
    from cardsvc.core.statuslist import StatusList
    from cardsvc.core.statuspatch import apply_patch, decode_entries, parse_patch
    from fuzz.common import fuzz

HELD = StatusList.new(4096, bits=2)


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x00":
        decode_entries(body)
        return
    runs, digest = parse_patch(strict_json_object(body, what="patch"))
    apply_patch(HELD, runs, digest, uri="https://issuer.test/v1/status-lists/0")


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

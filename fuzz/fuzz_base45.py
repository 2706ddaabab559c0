"""base45 (RFC 9285): b45decode on any text; encode then decode gives the bytes back."""

import atheris

with atheris.instrument_imports(include=["cardsvc", "fuzz"]):
    from cardsvc.core.base45 import b45decode, b45encode
    from cardsvc.core.errors import CoreError
    from fuzz.common import fuzz


def one_input(data: bytes) -> None:
    if data[:1] == b"\x00":
        raw = data[1:]
        if b45decode(b45encode(raw)) != raw:
            raise AssertionError(f"base45 round trip lost {raw!r}")
        return
    b45decode(data.decode("latin-1"))


if __name__ == "__main__":
    fuzz(one_input, expected=(CoreError,))

"""APDU responses: every SscSession command over a card whose answers the fuzzer writes.

The fake connection hands out (data, status word) pairs taken from the fuzz input, so the
61xx/6Cxx loops, chaining, the FCI's TLV and each command's answer parsing all read hostile
bytes. A card that runs out of answers raises the agent's NoCardError (it left the reader).
"""

import atheris

with atheris.instrument_imports(include=["cardsvc", "reader_agent", "fuzz"]):
    from cardsvc.core.errors import CoreError
    from fuzz.common import fuzz
    from reader_agent.card.session import SscSession
    from reader_agent.errors import AgentError, NoCardError


class ScriptedCard:
    """A CardConnection answering from the fuzz input."""

    def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
        self.fdp = fdp

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if self.fdp.remaining_bytes() < 2:
            raise NoCardError("the scripted card has no more answers", operation="transmit")
        sw = self.fdp.ConsumeIntInRange(0, 0xFFFF)
        return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, 300)), sw


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    session = SscSession(ScriptedCard(fdp))
    commands = (
        session.read_document,
        session.get_challenge,
        lambda: session.internal_authenticate(b"\x00" * 16),
        session.pin_status,
        lambda: session.pin_status(puk=True),
        lambda: session.verify_pin("123456"),
        lambda: session.sign_transaction(b"\x00" * 16, b"\x01" * 40),
        session.get_counter,
        session.generate_key,
    )
    while fdp.remaining_bytes() >= 2:
        commands[fdp.ConsumeIntInRange(0, len(commands) - 1)]()


if __name__ == "__main__":
    # A card can answer with a CoreError too: generate_key parses the chip's public key.
    fuzz(one_input, expected=(AgentError, CoreError))

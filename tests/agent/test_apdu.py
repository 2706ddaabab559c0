"""The APDU layer against a mocked transport: exact bytes out, loops bounded, typed errors."""

from __future__ import annotations

import logging

import pytest

from reader_agent.apdu import (
    TRAFFIC,
    CommandApdu,
    Response,
    processor_stack,
    redact,
)
from reader_agent.errors import CardProtocolError


class ScriptedCard:
    """A CardConnection that answers from a script and records every APDU sent."""

    def __init__(self, *answers: tuple[bytes, int]) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return self.answers.pop(0)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (CommandApdu(cla=0, ins=0xA4, p1=4, p2=0), "00a40400"),  # case 1
        (CommandApdu(cla=0, ins=0xB0, p1=0x81, p2=0, le=256), "00b0810000"),  # case 2S
        (CommandApdu(cla=0, ins=0x20, p1=0, p2=0x81, data=b"\x31\x32"), "00200081023132"),
        (
            CommandApdu(cla=0, ins=0x88, p1=0, p2=1, data=b"\xaa" * 3, le=256),
            "0088000103aaaaaa00",
        ),  # case 4S
        (CommandApdu(cla=0, ins=0xB0, p1=0x81, p2=0, le=1000), "00b081000003e8"),  # case 2E
        (CommandApdu(cla=0, ins=0xB0, p1=0x81, p2=0, le=65536), "00b08100000000"),
        (
            CommandApdu(cla=0x80, ins=0xD0, p1=0, p2=0, data=b"\x01" * 300),
            "80d0000000012c" + "01" * 300,
        ),  # case 3E
        (
            CommandApdu(cla=0x80, ins=0x2A, p1=0, p2=0, data=b"\x02" * 300, le=256),
            "802a000000012c" + "02" * 300 + "0100",
        ),  # case 4E
    ],
)
def test_encoding_is_exact(command: CommandApdu, expected: str) -> None:
    assert command.encode().hex() == expected


def test_extended_forced_for_small_command() -> None:
    command = CommandApdu(cla=0, ins=0xB0, p1=0, p2=0, le=16)
    assert command.encode(extended=True).hex() == "00b00000000010"
    with pytest.raises(ValueError, match="short"):
        CommandApdu(cla=0, ins=0xB0, p1=0, p2=0, le=300).encode(extended=False)


@pytest.mark.parametrize(
    "kwargs",
    [{"cla": 256}, {"le": 0}, {"le": 65537}, {"data": b"\x00" * 65536}],
)
def test_invalid_commands_are_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0}
    with pytest.raises(ValueError):
        CommandApdu(**{**base, **kwargs})  # type: ignore[arg-type]


def test_get_response_loop_concatenates() -> None:
    card = ScriptedCard((b"", 0x6110), (b"A" * 16, 0x6104), (b"B" * 4, 0x9000))
    stack = processor_stack(card)
    response = stack.send(CommandApdu(cla=0, ins=0x88, p1=0, p2=1, data=b"n", le=256))
    assert response == Response(data=b"A" * 16 + b"B" * 4, sw=0x9000)
    assert [a.hex() for a in card.sent] == ["00880001016e00", "00c0000010", "00c0000004"]


def test_wrong_le_is_resent_with_the_cards_le() -> None:
    card = ScriptedCard((b"", 0x6C08), (b"C" * 8, 0x9000))
    response = processor_stack(card).send(CommandApdu(cla=0, ins=0xB0, p1=0, p2=0, le=256))
    assert response.data == b"C" * 8
    assert [a.hex() for a in card.sent] == ["00b0000000", "00b0000008"]


def test_6cxx_inside_get_response() -> None:
    card = ScriptedCard((b"", 0x6100), (b"", 0x6C05), (b"D" * 5, 0x9000))
    response = processor_stack(card).send(CommandApdu(cla=0, ins=0xA4, p1=4, p2=0, data=b"x"))
    assert response.data == b"D" * 5
    assert [a.hex() for a in card.sent] == ["00a404000178", "00c0000000", "00c0000005"]


def test_runaway_61xx_is_a_typed_error() -> None:
    class Endless:
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return b"x" * 255, 0x61FF

    with pytest.raises(CardProtocolError, match="61xx"):
        processor_stack(Endless()).send(CommandApdu(cla=0, ins=0xB0, p1=0, p2=0, le=256))


def test_repeated_6cxx_is_a_typed_error() -> None:
    card = ScriptedCard((b"", 0x6C01), (b"", 0x6C02), (b"", 0x6C03))
    with pytest.raises(CardProtocolError, match="6Cxx"):
        processor_stack(card).send(CommandApdu(cla=0, ins=0xB0, p1=0, p2=0, le=256))


def test_chaining_on_short_only_cards() -> None:
    card = ScriptedCard((b"", 0x9000), (b"", 0x9000))
    data = bytes(range(256)) + b"\xff" * 44  # 300 bytes
    stack = processor_stack(card, extended=False)
    stack.send(CommandApdu(cla=0x80, ins=0xD0, p1=0, p2=0, data=data))
    assert card.sent == [
        bytes.fromhex("90d00000ff") + data[:255],
        bytes.fromhex("80d000002d") + data[255:],
    ]


def test_chaining_stops_at_the_first_error() -> None:
    card = ScriptedCard((b"", 0x6A84))
    response = processor_stack(card, extended=False).send(
        CommandApdu(cla=0x80, ins=0xD0, p1=0, p2=0, data=b"\x00" * 600)
    )
    assert response.sw == 0x6A84 and len(card.sent) == 1


def test_redaction_hides_pin_data() -> None:
    assert redact(bytes.fromhex("002000810c313233343536ffffffffffff")) == (
        "00200081 <13 bytes redacted>"
    )
    assert redact(bytes.fromhex("00200081")) == "00200081"  # tries-left query: nothing secret
    assert redact(bytes.fromhex("00b0810000")) == "00b0810000"
    for ins in ("24", "2c", "da"):
        assert "3132" not in redact(bytes.fromhex(f"00{ins}00810c313233343536ffffffffffff"))


def test_traffic_level_is_below_debug() -> None:
    assert TRAFFIC < logging.DEBUG
    assert logging.getLevelName(TRAFFIC) == "TRAFFIC"

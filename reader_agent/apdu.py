"""APDU layer: command encoding (short and extended length), command chaining, and the
61xx (GET RESPONSE) and 6Cxx (resend with the right Le) loops, as small stacked processors.

Every processor has the same one-method interface, :class:`ApduProcessor`, so they stack
like the layers in yubikit: :func:`processor_stack` builds
``chaining -> GET RESPONSE -> wrong-Le -> transport`` over any :class:`CardConnection`
(the pyscard one in :mod:`reader_agent.pcsc`, or a mock in the unit tests). Nothing here
interprets status words beyond those transport-level loops; the session does that.

Traffic is logged at :data:`TRAFFIC` (below DEBUG) by the transport, with the data of
commands that carry PINs or PUKs replaced by its length: see :func:`redact`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Protocol

from reader_agent.card.constants import Ins
from reader_agent.errors import CardProtocolError

__all__ = [
    "TRAFFIC",
    "ApduProcessor",
    "CardConnection",
    "ChainingProcessor",
    "CommandApdu",
    "GetResponseProcessor",
    "Response",
    "TransportProcessor",
    "WrongLeProcessor",
    "processor_stack",
    "redact",
]

#: Log level of APDU traffic: below DEBUG, so turning on debug logs does not dump traffic.
TRAFFIC: Final = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

SHORT_MAX_DATA: Final = 255
SHORT_MAX_LE: Final = 256
EXTENDED_MAX_DATA: Final = 65535
EXTENDED_MAX_LE: Final = 65536
#: A response assembled from 61xx pieces larger than this is a runaway card, not data.
MAX_ASSEMBLED_RESPONSE: Final = 65536
#: Bound on 61xx / 6Cxx round trips per command: a hostile card must not loop us forever.
MAX_LOOP_ROUNDS: Final = 300

# Commands whose data is a PIN, a PUK or both: never logged.
_SECRET_INS: Final = frozenset(
    {Ins.VERIFY, Ins.CHANGE_REFERENCE_DATA, Ins.RESET_RETRY_COUNTER, Ins.SET_PIN}
)


class CardConnection(Protocol):
    """A connection to one card: send one APDU, get ``(response data, status word)``."""

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandApdu:
    """One command APDU. ``le`` is ``None`` for no Le, else 1..65536 (256 in short form is
    encoded ``00``, 65536 in extended form ``0000``)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be a byte, got {value!r}")
        if len(self.data) > EXTENDED_MAX_DATA:
            raise ValueError(f"command data of {len(self.data)} bytes exceeds {EXTENDED_MAX_DATA}")
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_LE:
            raise ValueError(f"le must be 1..{EXTENDED_MAX_LE} or None, got {self.le!r}")

    @property
    def needs_extended(self) -> bool:
        """True when the command cannot be sent in short form."""
        return len(self.data) > SHORT_MAX_DATA or (self.le is not None and self.le > SHORT_MAX_LE)

    def encode(self, *, extended: bool | None = None) -> bytes:
        """The APDU bytes, in short form unless ``extended`` is True or the command needs it.

        Raises ValueError if ``extended`` is False but the command does not fit.
        """
        use_extended = self.needs_extended if extended is None else extended
        if not use_extended and self.needs_extended:
            raise ValueError("command does not fit in a short APDU")
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if not use_extended:
            body = bytes((len(self.data),)) + self.data if self.data else b""
            le = b"" if self.le is None else bytes((self.le % 256,))
            return header + body + le
        # ISO 7816-3 extended: Lc is 00 + 2 bytes; Le is 2 bytes after Lc, or 00 + 2 bytes
        # when there is no data.
        body = b"\x00" + len(self.data).to_bytes(2, "big") + self.data if self.data else b""
        if self.le is None:
            le = b""
        else:
            le = (self.le % 65536).to_bytes(2, "big")
            if not self.data:
                le = b"\x00" + le
        return header + body + le

    def with_le(self, le: int) -> CommandApdu:
        """The same command with another Le (for the 6Cxx resend)."""
        return CommandApdu(
            cla=self.cla, ins=self.ins, p1=self.p1, p2=self.p2, data=self.data, le=le
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    """A response APDU: data and the status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF


class ApduProcessor(Protocol):
    """One layer of the APDU stack: send a command, return the (processed) response."""

    def send(self, command: CommandApdu) -> Response: ...


class TransportProcessor:
    """Bottom layer: encode the command and transmit it over a :class:`CardConnection`.

    Sends short APDUs unless a command needs extended length; ``extended`` False makes an
    oversized command a ValueError here (the chaining layer above splits data first).
    """

    def __init__(self, connection: CardConnection, *, extended: bool = True) -> None:
        self.connection = connection
        self.extended = extended

    def send(self, command: CommandApdu) -> Response:
        if command.needs_extended and not self.extended:
            raise ValueError("card does not support extended length; command too large")
        data, sw = self.connection.transmit(command.encode())
        if not 0 <= sw <= 0xFFFF:
            raise CardProtocolError(f"status word {sw!r} is not 16 bits")
        return Response(data=bytes(data), sw=sw)


class WrongLeProcessor:
    """6Cxx: the card says "resend with Le = xx" (T=0 cards). Resend, bounded."""

    def __init__(self, inner: ApduProcessor) -> None:
        self.inner = inner

    def send(self, command: CommandApdu) -> Response:
        response = self.inner.send(command)
        rounds = 0
        while response.sw1 == 0x6C:
            rounds += 1
            if rounds > 2:
                # A card that keeps changing its mind about Le is broken; 2 tries is plenty.
                raise CardProtocolError(
                    f"card answered 6Cxx {rounds} times in a row to INS {command.ins:02X}"
                )
            command = command.with_le(response.sw2 or SHORT_MAX_LE)
            response = self.inner.send(command)
        return response


class GetResponseProcessor:
    """61xx: "xx more bytes available". Fetch them with GET RESPONSE and concatenate."""

    def __init__(self, inner: ApduProcessor) -> None:
        self.inner = inner

    def send(self, command: CommandApdu) -> Response:
        response = self.inner.send(command)
        buffer = bytearray(response.data)
        rounds = 0
        while response.sw1 == 0x61:
            rounds += 1
            if rounds > MAX_LOOP_ROUNDS or len(buffer) > MAX_ASSEMBLED_RESPONSE:
                raise CardProtocolError(
                    f"card kept answering 61xx ({rounds} rounds, {len(buffer)} bytes)"
                )
            get_response = CommandApdu(
                cla=command.cla & 0x03,  # keep only the logical channel bits
                ins=Ins.GET_RESPONSE,
                p1=0,
                p2=0,
                le=response.sw2 or SHORT_MAX_LE,
            )
            response = self.inner.send(get_response)
            buffer += response.data
        return Response(data=bytes(buffer), sw=response.sw)


class ChainingProcessor:
    """Command chaining (ISO 7816-4 5.1.1.1): data longer than one short APDU goes in
    pieces of ``chunk`` bytes with CLA bit 0x10 set on all but the last.

    Only used when the card lacks extended length (T=0 style cards); each intermediate
    piece must be answered 9000, anything else ends the chain with that response.
    """

    def __init__(self, inner: ApduProcessor, *, chunk: int = SHORT_MAX_DATA) -> None:
        if not 1 <= chunk <= SHORT_MAX_DATA:
            raise ValueError("chunk must be 1..255")
        self.inner = inner
        self.chunk = chunk

    def send(self, command: CommandApdu) -> Response:
        data = command.data
        if len(data) <= self.chunk:
            return self.inner.send(command)
        offset = 0
        while len(data) - offset > self.chunk:
            piece = CommandApdu(
                cla=command.cla | 0x10,
                ins=command.ins,
                p1=command.p1,
                p2=command.p2,
                data=data[offset : offset + self.chunk],
            )
            response = self.inner.send(piece)
            if response.sw != 0x9000:
                return response
            offset += self.chunk
        return self.inner.send(
            CommandApdu(
                cla=command.cla,
                ins=command.ins,
                p1=command.p1,
                p2=command.p2,
                data=data[offset:],
                le=command.le,
            )
        )


def processor_stack(connection: CardConnection, *, extended: bool = True) -> ApduProcessor:
    """The standard stack over ``connection``: chaining (short-only cards), 61xx, 6Cxx."""
    stack: ApduProcessor = WrongLeProcessor(TransportProcessor(connection, extended=extended))
    stack = GetResponseProcessor(stack)
    if not extended:
        stack = ChainingProcessor(stack)
    return stack


def redact(apdu: bytes) -> str:
    """Hex of ``apdu`` for the traffic log, with PIN/PUK-carrying command data replaced.

    VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and SET PIN keep their 4-byte header
    only (their data is a PIN, a PUK or both). Anything unparseable is shown by length.
    """
    if len(apdu) < 4:
        return apdu.hex()
    if apdu[1] in _SECRET_INS and len(apdu) > 5:
        return f"{apdu[:4].hex()} <{len(apdu) - 4} bytes redacted>"
    return apdu.hex()

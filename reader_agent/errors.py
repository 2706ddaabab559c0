"""Errors raised by reader_agent.

Every error derives from :class:`AgentError`, so a caller (the CLI, the counter service) can
catch one type. Errors that come from PC/SC derive from :class:`ReaderError` and carry the
PC/SC result code, the call that returned it and the reader involved, so a caller can act on
data instead of parsing messages.
"""

from __future__ import annotations

from enum import IntEnum


class PcscCode(IntEnum):
    """PC/SC result codes the agent tells apart (pcsc-lite ``pcsclite.h``, same as WinSCard).

    Not exhaustive: codes outside this list are kept as plain ``int`` (see :func:`as_pcsc_code`)
    rather than rejected, because drivers and other platforms return codes we never listed.
    """

    SUCCESS = 0x00000000
    F_INTERNAL_ERROR = 0x80100001
    E_CANCELLED = 0x80100002
    E_INVALID_HANDLE = 0x80100003
    E_INVALID_PARAMETER = 0x80100004
    E_NO_MEMORY = 0x80100006
    E_INSUFFICIENT_BUFFER = 0x80100008
    E_UNKNOWN_READER = 0x80100009
    E_TIMEOUT = 0x8010000A
    E_SHARING_VIOLATION = 0x8010000B
    E_NO_SMARTCARD = 0x8010000C
    E_PROTO_MISMATCH = 0x8010000F
    E_NOT_READY = 0x80100010
    E_INVALID_VALUE = 0x80100011
    F_COMM_ERROR = 0x80100013
    F_UNKNOWN_ERROR = 0x80100014
    E_NOT_TRANSACTED = 0x80100016
    E_READER_UNAVAILABLE = 0x80100017
    E_NO_SERVICE = 0x8010001D
    E_SERVICE_STOPPED = 0x8010001E
    E_UNSUPPORTED_FEATURE = 0x8010001F
    E_NO_READERS_AVAILABLE = 0x8010002E
    E_COMM_DATA_LOST = 0x8010002F
    W_UNSUPPORTED_CARD = 0x80100065
    W_UNRESPONSIVE_CARD = 0x80100066
    W_UNPOWERED_CARD = 0x80100067
    W_RESET_CARD = 0x80100068
    W_REMOVED_CARD = 0x80100069


def as_pcsc_code(value: int) -> PcscCode | int:
    """Return ``value`` as a :class:`PcscCode` when it is one we name, else the plain int.

    PC/SC result codes are 32-bit; some platforms hand them over as a signed ``LONG``, so the
    value is normalised to its unsigned 32-bit form first.
    """
    unsigned = value & 0xFFFFFFFF
    try:
        return PcscCode(unsigned)
    except ValueError:
        return unsigned


def describe_pcsc_code(value: int) -> str:
    """Name a PC/SC result code for messages: ``SCARD_E_NO_SERVICE (0x8010001D)``."""
    code = as_pcsc_code(value)
    if isinstance(code, PcscCode):
        return f"SCARD_{code.name} (0x{code.value:08X})"
    return f"unknown PC/SC code 0x{code:08X}"


class AgentError(Exception):
    """Root of every error raised by ``reader_agent``."""

    #: Short machine-readable code, stable across releases.
    code: str = "agent-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReaderError(AgentError):
    """Talking to a reader or card through PC/SC failed.

    ``operation`` names the PC/SC call (``SCardConnect``) or agent step that failed,
    ``pcsc_code`` is the PC/SC result code when PC/SC returned one (``None`` for failures the
    agent detected itself, such as a missed deadline), and ``reader`` is the reader name when
    the operation concerned one reader.
    """

    code = "reader-error"

    def __init__(
        self,
        detail: str,
        *,
        operation: str,
        pcsc_code: int | None = None,
        reader: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.operation = operation
        self.pcsc_code: PcscCode | int | None = (
            None if pcsc_code is None else as_pcsc_code(pcsc_code)
        )
        self.reader = reader


class ServiceUnavailableError(ReaderError):
    """The PC/SC service (pcscd) is not running or went away (``SCARD_E_NO_SERVICE``,
    ``SCARD_E_SERVICE_STOPPED``). Start pcscd; a new context is needed once it is back."""

    code = "pcsc-service-unavailable"


class NoReadersError(ReaderError):
    """PC/SC has no reader at all (``SCARD_E_NO_READERS_AVAILABLE``)."""

    code = "no-readers"


class NoCardError(ReaderError):
    """The reader has no card, or the card was removed (``SCARD_E_NO_SMARTCARD``,
    ``SCARD_W_REMOVED_CARD``)."""

    code = "no-card"


class ReaderTimeoutError(ReaderError):
    """A PC/SC operation did not finish within the agent's deadline of ``timeout`` seconds.

    pcsc-lite itself has no deadline for a hung pcscd, ``SCardConnect`` or a stalled card, so
    the agent enforces its own; the abandoned call may still complete in the background.
    """

    code = "reader-timeout"

    def __init__(
        self, detail: str, *, operation: str, timeout: float, reader: str | None = None
    ) -> None:
        super().__init__(detail, operation=operation, reader=reader)
        self.timeout = timeout


class CardError(AgentError):
    """The card answered, but not with what the command needed."""

    code = "card-error"


class ApduError(CardError):
    """The card answered a command with status word ``sw`` (not 9000).

    ``data`` is any response data that came with it; ``command`` names the command.
    """

    code = "apdu-error"

    def __init__(self, detail: str, *, sw: int, command: str, data: bytes = b"") -> None:
        super().__init__(detail)
        self.sw = sw
        self.command = command
        self.data = data


class InvalidPinError(ApduError):
    """A PIN (or PUK) was wrong; ``tries_left`` attempts remain before it blocks."""

    code = "invalid-pin"

    def __init__(self, detail: str, *, sw: int, command: str, tries_left: int) -> None:
        super().__init__(detail, sw=sw, command=command)
        self.tries_left = tries_left


class PinBlockedError(ApduError):
    """The PIN (or PUK) is blocked (6983): it must be unblocked with the PUK at a counter."""

    code = "pin-blocked"


class SecurityStatusError(ApduError):
    """The command needs a verified PIN in this session first (6982)."""

    code = "security-status-not-satisfied"


class ConditionsNotSatisfiedError(ApduError):
    """The card refused in its current state (6985), e.g. personalisation after lock."""

    code = "conditions-not-satisfied"


class ApplicationNotFoundError(ApduError):
    """The card has no cardsvc applet (6A82 to SELECT): it is not one of our cards."""

    code = "application-not-found"


class CardProtocolError(CardError):
    """The card's answer does not follow docs/card-protocol.md (garbled or hostile card)."""

    code = "card-protocol-error"


class CardNotPersonalizedError(CardError):
    """The card is blank (no card document, key or PIN yet): personalise it first."""

    code = "card-not-personalized"


class InvalidPinFormatError(AgentError):
    """A PIN or PUK typed at the counter is not well formed (checked before the card sees it,
    so a typo never costs a try)."""

    code = "invalid-pin-format"


class IssuerError(AgentError):
    """The issuer refused a request; ``status`` and the problem document say why."""

    code = "issuer-error"

    def __init__(self, detail: str, *, status: int | None = None, problem: object = None) -> None:
        super().__init__(detail)
        self.status = status
        self.problem = problem


class IssuerUnreachableError(IssuerError):
    """No answer from the issuer (network down, wrong URL, timeout): work offline."""

    code = "issuer-unreachable"

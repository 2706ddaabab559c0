"""Errors raised by cardsvc.core.

Every error derives from :class:`CoreError`, so a partner can catch one type. Subclasses
carry the data a caller needs to act on (which check failed, which limit was exceeded)
rather than only a message.
"""

from __future__ import annotations


def shown(value: object, limit: int = 48) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about input.

    Input can be huge (a multi-megabyte string, a CBOR bignum whose repr raises
    ValueError); an error message must neither fail nor copy it whole.
    """
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        if isinstance(value, int):  # beyond sys.get_int_max_str_digits()
            return f"<{value.bit_length()}-bit integer>"
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class CoreError(Exception):
    """Root of every error raised by ``cardsvc.core``."""

    #: Short machine-readable code, stable across releases (used in problem+json ``type``).
    code: str = "core-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidIdentityError(CoreError):
    """An identity value (citizen ID number, card number, amount) is malformed."""

    code = "invalid-identity"

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field} {shown(value)}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class DecodeError(CoreError):
    """Bytes or text could not be decoded into the expected format."""

    code = "decode-error"

    def __init__(self, format_name: str, reason: str) -> None:
        super().__init__(f"{format_name}: {reason}")
        self.format_name = format_name
        self.reason = reason


class InputTooLargeError(DecodeError):
    """Input exceeds the documented size limit; rejected before any expensive work."""

    code = "input-too-large"

    def __init__(self, format_name: str, size: int, limit: int) -> None:
        super().__init__(format_name, f"{size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


class VerificationError(CoreError):
    """A signed object failed verification; ``check`` names the failed check.

    Checks are short stable names such as ``signature``, ``algorithm``, ``key-unknown``,
    ``key-purpose``, ``key-window``, ``expired``, ``not-yet-valid``, ``issued-in-future``,
    ``typ``, ``claims``, ``crit``, ``rollback``.
    """

    code = "verification-failed"

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check


class StatusListError(CoreError):
    """A status list operation was invalid (index out of range, bad status value)."""

    code = "status-list-error"

"""Errors raised by cardsvc.core.

Every error derives from :class:`CoreError`, so a partner can catch one type. Subclasses
carry the data a caller needs to act on (which check failed, which limit was exceeded)
rather than only a message.
"""

from __future__ import annotations


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
        super().__init__(f"{field} {value!r}: {reason}")
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

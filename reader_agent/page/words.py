"""What the clerk reads: every error and verdict in plain words, with what to do next.

One place maps the agent's typed errors (and the genuine-card verdicts) to a short title,
a sentence saying what happened and one saying what to do. The page shows these as they
are; the JSON API answers them as RFC 9457 problem documents (``title``, ``detail``,
``next``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reader_agent.cache import CacheError
from reader_agent.check import Verdict
from reader_agent.counter import CounterRefusedError
from reader_agent.errors import (
    AgentError,
    CardError,
    InvalidPinFormatError,
    IssuerError,
    IssuerUnreachableError,
    NoCardError,
    NoReadersError,
    ReaderError,
    ReaderTimeoutError,
    ServiceUnavailableError,
)
from reader_agent.journal import JournalError

__all__ = ["Words", "explain", "verdict_words"]


@dataclass(frozen=True, kw_only=True)
class Words:
    """A problem for the clerk: HTTP status, stable code, title, what happened, what next."""

    status: int
    code: str
    title: str
    detail: str
    next: str
    extra: dict[str, Any] = field(default_factory=dict)

    def problem(self) -> dict[str, Any]:
        return {
            "type": f"urn:cardsvc:counter:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "next": self.next,
            **self.extra,
        }


CARD_PULLED = Words(
    status=409,
    code="card-removed",
    title="Card taken out",
    detail="The card was taken out of the reader before the step finished. "
    "Nothing was signed and nothing was paid.",
    next="Insert the card again and start over: check, PIN, then the service.",
)

_REFUSALS = {
    "floor-limit": "The amount is above what this counter may pay while offline.",
    "card-offline-uses": "This card has been used offline too many times since it was last "
    "seen online.",
    "terminal-offline-total": "This counter has too much unsynced offline money already.",
    "cache": "The counter's copy of the card status lists is missing or unusable.",
    "status-age": "The counter's copy of the card status list is too old for offline use.",
    "trust-list-age": "The counter's copy of the trust list is too old for offline use.",
    "certificate": "This counter has no terminal certificate yet.",
    "journal": "The counter's journal is damaged and takes no new records.",
    "check": "The card check with the PIN did not pass.",
    "status": "The card's status could not be checked.",
}
_REFUSAL_NEXT = {
    "certificate": "Connect the counter to the issuer once, then try again.",
    "journal": "Call support: sync what is intact, then have the journal moved aside for "
    "review.",
    "check": "Check the card again and ask for the PIN.",
}
_OFFLINE_NEXT = (
    "Wait until the counter is online again (the badge at the top), or send the cardholder "
    "to a counter that is online."
)


def explain(exc: BaseException) -> Words:
    """The plain words for any error the counter can meet (never raises)."""
    if isinstance(exc, CounterRefusedError):
        said = _REFUSALS.get(exc.reason, "The counter refused this transaction.")
        return Words(
            status=409, code=f"refused-{exc.reason}", title="Refused before the card signed",
            detail=f"{said} Nothing was signed or paid. ({exc.detail})",
            next=_REFUSAL_NEXT.get(exc.reason, _OFFLINE_NEXT),
            extra={"reason": exc.reason},
        )  # fmt: skip
    if isinstance(exc, JournalError):
        return Words(
            status=409, code="journal-damaged", title="Journal damaged",
            detail=f"The counter's journal cannot take records: {exc.detail}",
            next="Call support. Do not hand out money at this counter until it is fixed.",
        )  # fmt: skip
    if isinstance(exc, IssuerUnreachableError):
        return Words(
            status=503, code="issuer-unreachable", title="Issuer unreachable",
            detail="The issuer cannot be reached from this counter right now.",
            next="Work offline where the rules allow it, or try again when the counter is "
            "online.",
        )  # fmt: skip
    if isinstance(exc, IssuerError):
        problem = exc.problem if isinstance(exc.problem, dict) else {}
        said = str(problem.get("detail") or exc.detail)
        return Words(
            status=502, code="issuer-refused", title="The issuer refused",
            detail=f"The issuer refused the request: {said}. Nothing was paid.",
            next="Read the reason to the cardholder; if it looks wrong, call support with "
            "the time and the card number.",
            extra={"issuer_status": exc.status},
        )  # fmt: skip
    if isinstance(exc, NoCardError):
        return CARD_PULLED
    if isinstance(exc, ServiceUnavailableError):
        return Words(
            status=503, code="pcscd-down", title="Card reader service stopped",
            detail="The card reader service (pcscd) is not running.",
            next="Start it (systemctl start pcscd.socket), then insert the card again.",
        )  # fmt: skip
    if isinstance(exc, NoReadersError):
        return Words(
            status=409, code="no-reader", title="No card reader",
            detail="No card reader is connected.",
            next="Plug the reader in; the page notices it by itself.",
        )  # fmt: skip
    if isinstance(exc, ReaderTimeoutError):
        return Words(
            status=504, code="reader-timeout", title="The card does not answer",
            detail="The card or the reader stopped answering. Nothing was signed or paid.",
            next="Take the card out, insert it again and start over.",
        )  # fmt: skip
    if isinstance(exc, ReaderError):
        return Words(
            status=409, code="reader-error", title="Card reader problem",
            detail=f"Talking to the card failed: {exc.detail}. Nothing was signed or paid.",
            next="Take the card out, insert it again and start over.",
        )  # fmt: skip
    if isinstance(exc, InvalidPinFormatError):
        return Words(
            status=422, code="pin-format", title="PIN not well formed",
            detail=f"{exc.detail}. It was not sent to the card, so no try was used.",
            next="Ask the cardholder to type the PIN again (6 to 12 digits).",
        )  # fmt: skip
    if isinstance(exc, CardError):
        return Words(
            status=409, code="card-error", title="The card refused",
            detail=f"The card refused the command: {exc.detail}. Nothing was paid.",
            next="Take the card out, insert it again and start over; if it happens again "
            "the card may be faulty.",
        )  # fmt: skip
    if isinstance(exc, CacheError):
        return Words(
            status=409, code="cache", title="Counter data missing",
            detail=f"The counter's offline data is not usable: {exc.detail}",
            next="Connect the counter to the issuer; it refreshes its data by itself.",
        )  # fmt: skip
    if isinstance(exc, AgentError):
        code = getattr(exc, "code", "agent-error")
        return Words(
            status=409, code=str(code), title="Cannot do that now", detail=exc.detail,
            next="Follow the message, then try again.",
        )  # fmt: skip
    return Words(
        status=500, code="internal", title="Unexpected error",
        detail="Something went wrong inside the counter agent. Nothing was paid.",
        next="Try again; if it happens again, call support.",
    )  # fmt: skip


_VERDICTS: dict[Verdict, tuple[str, str]] = {
    Verdict.GENUINE: ("The card is genuine and in good standing.", ""),
    Verdict.NOT_PERSONALIZED: (
        "This card has no card data: it was never personalised.",
        "Do not accept it. Send the cardholder to an issuing counter.",
    ),
    Verdict.INVALID_DOCUMENT: (
        "The data on the card is not signed by the issuer.",
        "Do not accept the card. Keep it and follow the procedure for suspected fraud.",
    ),
    Verdict.CLONE: (
        "The chip could not prove it holds the card's key: this card may be a copy.",
        "Do not accept the card. Keep it and follow the procedure for suspected fraud.",
    ),
    Verdict.REVOKED: (
        "This card is revoked (reported lost for good, replaced or withdrawn).",
        "Do not accept it. The cardholder must apply for a new card.",
    ),
    Verdict.SUSPENDED: (
        "This card is suspended (reported lost).",
        "Do not accept it. If the cardholder found the card, they can have it resumed at "
        "an issuing counter.",
    ),
    Verdict.STATUS_UNKNOWN: (
        "The counter cannot tell whether this card is still valid: its copy of the status "
        "lists is missing or too old.",
        "Connect the counter to the issuer (it refreshes by itself), then check again.",
    ),
    Verdict.PIN_FAILED: (
        "The PIN was not right.",
        "Ask the cardholder to type it again; the tries left are shown.",
    ),
    Verdict.PIN_BLOCKED: (
        "The PIN is blocked after too many wrong tries.",
        "No payment is possible. The cardholder must unblock it with the PUK at an issuing "
        "counter (reader-agent pin unblock).",
    ),
    Verdict.PIN_REFUSED: (
        "Only one PIN try is left: a wrong PIN now would block the card.",
        "If the cardholder is sure of the PIN, tick 'one try left' and try once more.",
    ),
}


def verdict_words(verdict: Verdict) -> tuple[str, str]:
    """(what the verdict means, what to do next) for the clerk."""
    return _VERDICTS[verdict]

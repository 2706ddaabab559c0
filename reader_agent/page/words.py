"""What the clerk reads: every error and verdict in plain words, with what to do next.

One place maps the agent's typed errors (and the genuine-card verdicts) to a short title,
a sentence saying what happened and one saying what to do. The error's own words (the card
stack's, the issuer's: English, technical) never go into those sentences; they travel
beside them as ``technical``, which the page shows folded, for support. The words themselves are in
the catalogues of :mod:`wording` (``counter.problem.CODE.title`` / ``.detail`` /
``.next``, ``counter.verdict.VERDICT.meaning`` / ``.advice``), so a :class:`Words` holds
messages, put into the reader's language when answered: the JSON API answers them as
RFC 9457 problem documents (``title``, ``detail``, ``next``) in the request's language.
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
from reader_agent.page.issuer_words import issuer_reason, issuer_technical
from wording import Message, render

__all__ = ["CARD_PULLED", "Words", "explain", "problem_words", "verdict_words"]

_P = "counter.problem."


@dataclass(frozen=True, kw_only=True)
class Words:
    """A problem for the clerk: HTTP status, stable code, title, what happened, what next
    (as catalogue messages, rendered per language by :meth:`problem`)."""

    status: int
    code: str
    title: Message
    detail: Message
    next: Message
    extra: dict[str, Any] = field(default_factory=dict)

    def problem(self, lang: str) -> dict[str, Any]:
        return {
            "type": f"urn:cardsvc:counter:{self.code}",
            "title": render(lang, self.title),
            "status": self.status,
            "detail": render(lang, self.detail),
            "next": render(lang, self.next),
            **self.extra,
        }


def problem_words(
    status: int, code: str, *, key: str | None = None, extra: dict[str, Any] | None = None,
    **params: Any,
) -> Words:
    """Words from the catalogue entries ``counter.problem.KEY.title/.detail/.next`` (KEY is
    the code unless given), all three filled with ``params``."""
    base = _P + (key or code)
    return Words(status=status, code=code, title=Message(f"{base}.title", params),
                 detail=Message(f"{base}.detail", params), next=Message(f"{base}.next", params),
                 extra=extra or {})  # fmt: skip


CARD_PULLED = problem_words(409, "card-removed")

#: Refusal reasons with words of their own (``counter.refusal.REASON``); others read as
#: ``counter.refusal.unknown``.
REFUSALS = frozenset({
    "floor-limit", "card-offline-uses", "terminal-offline-total", "cache", "status-age",
    "trust-list-age", "certificate", "journal", "check", "status",
})  # fmt: skip
_REFUSAL_NEXT = frozenset({"certificate", "journal", "check"})


def explain(exc: BaseException) -> Words:
    """The plain words for any error the counter can meet (never raises)."""
    if isinstance(exc, CounterRefusedError):
        reason = exc.reason if exc.reason in REFUSALS else "unknown"
        next_key = exc.reason if exc.reason in _REFUSAL_NEXT else "offline"
        return problem_words(
            409, f"refused-{exc.reason}", key="refused",
            said=Message(f"counter.refusal.{reason}"),
            next=Message(f"counter.refusal-next.{next_key}"),
            extra={"reason": exc.reason, "technical": exc.detail},
        )  # fmt: skip
    if isinstance(exc, JournalError):
        return problem_words(409, "journal-damaged", extra=_technical(exc))
    if isinstance(exc, IssuerUnreachableError):
        return problem_words(503, "issuer-unreachable")
    if isinstance(exc, IssuerError):
        technical = issuer_technical(exc.problem, exc.detail)
        return problem_words(502, "issuer-refused", said=issuer_reason(exc.problem),
                             extra={"issuer_status": exc.status, "technical": technical})
    if isinstance(exc, NoCardError):
        return CARD_PULLED
    if isinstance(exc, ServiceUnavailableError):
        return problem_words(503, "pcscd-down")
    if isinstance(exc, NoReadersError):
        return problem_words(409, "no-reader")
    if isinstance(exc, ReaderTimeoutError):
        return problem_words(504, "reader-timeout")
    if isinstance(exc, ReaderError):
        return problem_words(409, "reader-error", extra=_technical(exc))
    if isinstance(exc, InvalidPinFormatError):
        return problem_words(422, "pin-format", extra=_technical(exc))
    if isinstance(exc, CardError):
        return problem_words(409, "card-error", extra=_technical(exc))
    if isinstance(exc, CacheError):
        return problem_words(409, "cache", extra=_technical(exc))
    if isinstance(exc, AgentError):
        code = getattr(exc, "code", "agent-error")
        return problem_words(409, str(code), key="agent-error", extra=_technical(exc))
    return problem_words(500, "internal")


def _technical(exc: AgentError) -> dict[str, Any]:
    """The error's own (English) words, beside the clerk's: the page folds them away."""
    return {"technical": exc.detail[:300]}


def verdict_words(verdict: Verdict) -> tuple[Message, Message]:
    """(what the verdict means, what to do next) for the clerk."""
    base = f"counter.verdict.{verdict.value}"
    return Message(f"{base}.meaning"), Message(f"{base}.advice")

"""E-card QR codes at the counter, verified online by the issuer (``POST /v1/verify``).

A scanner types the QR text into the page. The agent has no offline verifier for e-cards
(their status and one-time use live at the issuer), so when the issuer cannot be reached
the answer is plainly *not verified*, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cardsvc.core.pairing import SCHEME_PREFIX as ACTIVATION_PREFIX
from cardsvc.core.qrtoken import Purpose
from reader_agent.errors import IssuerError, IssuerUnreachableError
from reader_agent.issuer import IssuerClient
from reader_agent.page.issuer_words import issuer_reason, issuer_technical
from wording import Message, render

__all__ = ["CHECKS", "PURPOSES", "QrOutcome", "verify_qr"]

PURPOSES = tuple(p.name.lower() for p in Purpose)

#: The issuer's checks with words of their own (``counter.qr.check.CHECK``).
CHECKS = frozenset({
    "signature", "expired", "issued-in-future", "format", "prefix", "issuer", "key-unknown",
    "key-window", "ecard-unknown", "ecard-suspended", "ecard-revoked", "purpose", "replayed",
    "card-revoked", "card-suspended",
})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class QrOutcome:
    outcome: str  # valid | invalid | unverified
    message: Message
    purpose: str
    check: str | None = None
    attributes: dict[str, Any] | None = None
    expires_at: int | None = None
    #: The issuer's own words (English), for support: never in ``message``.
    technical: str | None = None

    def to_json(self, lang: str) -> dict[str, Any]:
        return {"outcome": self.outcome, "message": render(lang, self.message),
                "purpose": self.purpose,
                "check": self.check, "attributes": self.attributes,
                "expires_at": self.expires_at, "technical": self.technical}  # fmt: skip


def verify_qr(issuer: IssuerClient, text: str, purpose: str) -> QrOutcome:
    """Ask the issuer; every answer, including none, becomes a :class:`QrOutcome`."""
    if text.startswith(ACTIVATION_PREFIX):  # the wallet's "activate at the counter" code
        return QrOutcome(outcome="invalid", purpose=purpose, check="activation-code",
                         message=Message("counter.qr.activation-code"))  # fmt: skip
    try:
        verified = issuer.verify_token(text, Purpose[purpose.upper()])
    except IssuerUnreachableError:
        return QrOutcome(
            outcome="unverified", purpose=purpose,
            message=Message("counter.qr.unreachable"),
        )  # fmt: skip
    except IssuerError as exc:
        problem = exc.problem if isinstance(exc.problem, dict) else {}
        check = problem.get("check")
        if exc.status in (400, 422) and isinstance(check, str):
            why = (Message(f"counter.qr.check.{check}") if check in CHECKS
                   else Message("counter.qr.check.unknown"))
            return QrOutcome(outcome="invalid", purpose=purpose, check=check,
                             message=Message("counter.qr.invalid", {"why": why}),
                             technical=issuer_technical(problem, exc.detail))  # fmt: skip
        if exc.status in (400, 422):
            return QrOutcome(outcome="invalid", purpose=purpose, check="malformed",
                             message=Message("counter.qr.malformed"))  # fmt: skip
        return QrOutcome(
            outcome="unverified", purpose=purpose,
            message=Message("counter.qr.unverified", {"reason": issuer_reason(problem)}),
            technical=issuer_technical(problem, exc.detail),
        )  # fmt: skip
    return QrOutcome(
        outcome="valid", purpose=purpose,
        message=Message("counter.qr.valid", {"purpose": Message(f"purpose.{purpose}")}),
        attributes=verified.attributes, expires_at=verified.expires_at,
    )  # fmt: skip

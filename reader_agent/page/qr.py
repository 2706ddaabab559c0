"""E-card QR codes at the counter, verified online by the issuer (``POST /v1/verify``).

A scanner types the QR text into the page. The agent has no offline verifier for e-cards
(their status and one-time use live at the issuer), so when the issuer cannot be reached
the answer is plainly *not verified*, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cardsvc.core.qrtoken import Purpose
from reader_agent.errors import IssuerError, IssuerUnreachableError
from reader_agent.issuer import IssuerClient

__all__ = ["PURPOSES", "QrOutcome", "verify_qr"]

PURPOSES = tuple(p.name.lower() for p in Purpose)

_CHECKS = {
    "signature": "its signature does not verify: it was not made by the issuer",
    "expired": "it has expired: ask the cardholder to show a fresh code",
    "issued-in-future": "it is not valid yet: the phone's clock may be wrong",
    "format": "it is not a complete e-card code: scan it again",
    "prefix": "it is not an e-card code",
    "issuer": "it was not issued by this issuer",
    "key-unknown": "it was signed with a key the issuer does not know",
    "key-window": "it was signed with a key outside its validity",
    "ecard-unknown": "the e-card does not exist",
    "ecard-suspended": "the e-card is suspended (reported lost)",
    "ecard-revoked": "the e-card is revoked",
    "purpose": "it was made for another purpose: ask for a code for this service",
    "replayed": "it was already used once: ask the cardholder to show a fresh code",
    "card-revoked": "the card behind it is revoked",
    "card-suspended": "the card behind it is suspended (reported lost)",
}


@dataclass(frozen=True, kw_only=True)
class QrOutcome:
    outcome: str  # valid | invalid | unverified
    message: str
    purpose: str
    check: str | None = None
    attributes: dict[str, Any] | None = None
    expires_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "message": self.message, "purpose": self.purpose,
                "check": self.check, "attributes": self.attributes,
                "expires_at": self.expires_at}  # fmt: skip


def verify_qr(issuer: IssuerClient, text: str, purpose: str) -> QrOutcome:
    """Ask the issuer; every answer, including none, becomes a :class:`QrOutcome`."""
    try:
        verified = issuer.verify_token(text, Purpose[purpose.upper()])
    except IssuerUnreachableError:
        return QrOutcome(
            outcome="unverified", purpose=purpose,
            message="NOT VERIFIED: the issuer cannot be reached, so this code cannot be "
            "checked. Do not accept it on its own: ask for the physical card instead.",
        )  # fmt: skip
    except IssuerError as exc:
        problem = exc.problem if isinstance(exc.problem, dict) else {}
        check = problem.get("check")
        if exc.status in (400, 422) and isinstance(check, str):
            why = _CHECKS.get(check, f"the issuer's check '{check}' failed")
            return QrOutcome(outcome="invalid", purpose=purpose, check=check,
                             message=f"NOT VALID: {why}. Do not accept it.")  # fmt: skip
        if exc.status in (400, 422):
            return QrOutcome(outcome="invalid", purpose=purpose, check="malformed",
                             message="NOT VALID: this is not an e-card code (or it was "
                             "scanned incompletely). Scan it again.")  # fmt: skip
        return QrOutcome(
            outcome="unverified", purpose=purpose,
            message=f"NOT VERIFIED: the issuer did not check the code ({exc.detail}). "
            "Ask for the physical card instead.",
        )  # fmt: skip
    return QrOutcome(
        outcome="valid", purpose=purpose,
        message=f"VALID e-card for {purpose}, checked online by the issuer just now.",
        attributes=verified.attributes, expires_at=verified.expires_at,
    )  # fmt: skip

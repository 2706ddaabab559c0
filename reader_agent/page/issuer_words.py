"""The issuer's refusals in the clerk's words, never its own (English) ``detail``.

The issuer answers every refusal as RFC 9457 problem+json whose ``type`` ends in a stable
code (``card-not-found``, ``illegal-transition``, ...). :func:`issuer_reason` maps the codes
a counter meets to catalogue words (``counter.issuer.CODE``), and any other to a plain
sentence; the issuer's ``detail`` stays available beside them as the technical detail
(:func:`issuer_technical`), which the page folds away and support reads.
"""

from __future__ import annotations

from typing import Any

from wording import Message

__all__ = ["ISSUER_CODES", "issuer_code", "issuer_reason", "issuer_technical"]

#: The issuer's problem codes with words of their own (``counter.issuer.CODE``).
ISSUER_CODES = frozenset({
    "card-not-found", "person-not-found", "ecard-not-found", "entitlement-not-found",
    "illegal-transition", "no-active-card", "holder-deceased", "ecard-inactive",
    "device-already-bound", "invalid-device-key", "activation-failed", "entitlement-unavailable",
    "invalid-entitlement", "transaction-refused", "transaction-conflict", "rate-limited",
    "forbidden", "unauthenticated", "invalid-client", "token-rejected", "store-unavailable",
    "signing-unavailable",
    "idempotency-request-in-flight", "bad-request", "invalid-identity", "decode-error",
})  # fmt: skip


def _problem(problem: object) -> dict[str, Any]:
    return problem if isinstance(problem, dict) else {}


def issuer_code(problem: object) -> str:
    """The problem's code: the last part of its ``type`` ("" when there is none)."""
    return str(_problem(problem).get("type", "")).rsplit("/", 1)[-1][:64]


def issuer_reason(problem: object) -> Message:
    """What the issuer's refusal means, in words (for ``{reason}`` / ``{said}``)."""
    code = issuer_code(problem)
    if code in ISSUER_CODES:
        return Message(f"counter.issuer.{code}")
    return Message("counter.issuer.other")


def issuer_technical(problem: object, fallback: object = "") -> str:
    """The issuer's own words (code and detail), for the folded technical details."""
    body = _problem(problem)
    detail = str(body.get("detail") or fallback or "")[:300]
    code = issuer_code(problem)
    return f"{code}: {detail}" if code and detail else code or detail

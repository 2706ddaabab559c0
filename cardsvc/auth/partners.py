"""Partners: the purposes each may verify and its request rate, and the refusals.

A partner's policy is stored with its client (table ``partners``) and copied into every
access token it receives (claims ``purposes`` and ``rate_limit``), so the verify hot
path checks it without a database read. A policy change reaches tokens already issued
when they expire, within ``ACCESS_TOKEN_LIFETIME``; a suspension ends them within seconds
(:mod:`cardsvc.auth.suspensions`).

An operator changes a partner's policy with :func:`change_partner_policy` (``cardsvc
clients policy``); each change is a leaf of the audit log, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from cardsvc.audit import log as audit
from cardsvc.audit.events import Actor, AuditEvent, AuditKind
from cardsvc.auth.tokens import Principal
from cardsvc.core.qrtoken import Purpose
from cardsvc.db.models import ClientRow, PartnerRow
from cardsvc.errors import CardsvcError, Forbidden, NotFound
from cardsvc.ratelimit import Admission, RateLimiter, admit
from cardsvc.ratelimit import RateLimitedError as RateLimitedError
from cardsvc.registry.db import write_session
from cardsvc.replay import OneTimeUse

#: Every purpose a QR token can be minted for; a partner is allowed a subset.
PURPOSES = frozenset(p.name.lower() for p in Purpose)
#: Requests per minute when none is given at registration.
DEFAULT_RATE_LIMIT = 600


@dataclass(frozen=True, kw_only=True)
class PartnerPolicy:
    """What one partner may do; checks itself when built."""

    purposes: frozenset[str]
    rate_limit: int  # verify requests per minute

    def __post_init__(self) -> None:
        if not self.purposes:
            raise CardsvcError("a partner needs at least one purpose")
        unknown = self.purposes - PURPOSES
        if unknown:
            raise CardsvcError(
                f"unknown purpose {', '.join(sorted(unknown))}; "
                f"one of {', '.join(sorted(PURPOSES))}"
            )
        if isinstance(self.rate_limit, bool) or not 1 <= self.rate_limit <= 1_000_000:
            raise CardsvcError("the rate limit is 1 to 1000000 requests per minute")


class PartnerNotFoundError(NotFound, CardsvcError):
    """No partner client with this id (an unknown id, or an operator or terminal)."""

    code = "partner-not-found"

    def __init__(self, client_id: str) -> None:
        super().__init__(f"no partner client {client_id!r}")
        self.client_id = client_id
        self.fields = {"client_id": client_id}


def change_partner_policy(
    engine: Engine,
    client_id: str,
    *,
    purposes: Iterable[str] | None = None,
    rate_limit: int | None = None,
    actor: Actor,
    now: datetime,
) -> PartnerPolicy:
    """Replace a partner's purposes and/or rate limit; returns the new policy.

    What is not given stays. The change and its audit leaf (``client.policy_changed``,
    with the policy before and after) commit together; access tokens already issued keep
    the old policy until they expire.
    """
    if purposes is None and rate_limit is None:
        raise CardsvcError("give the new purposes, the new rate limit, or both")
    with write_session(engine) as session:
        client = session.get(ClientRow, client_id)
        row = session.get(PartnerRow, client_id, with_for_update=True) if client else None
        if row is None:
            raise PartnerNotFoundError(client_id)
        before = PartnerPolicy(
            purposes=frozenset(row.purposes.split()), rate_limit=row.rate_limit_per_minute
        )
        after = PartnerPolicy(
            purposes=before.purposes if purposes is None else frozenset(purposes),
            rate_limit=before.rate_limit if rate_limit is None else rate_limit,
        )
        if after == before:
            return before
        row.purposes = " ".join(sorted(after.purposes))
        row.rate_limit_per_minute = after.rate_limit
        row.updated_at = now
        audit.append(
            session,
            AuditEvent(
                kind=AuditKind.CLIENT_POLICY_CHANGED,
                subject=f"client:{client_id}",
                data={
                    "before": {
                        "purposes": sorted(before.purposes),
                        "rate_limit": before.rate_limit,
                    },
                    "after": {"purposes": sorted(after.purposes), "rate_limit": after.rate_limit},
                },
                row=row,
            ),
            actor=actor,
            now=now,
        )
    return after


class PurposeForbiddenError(Forbidden, CardsvcError):
    """A partner asked to verify for a purpose it is not registered for."""

    code = "purpose-forbidden"

    def __init__(self, purpose: str, allowed: frozenset[str]) -> None:
        shown = ", ".join(sorted(allowed)) or "none"
        super().__init__(f"this partner may not verify for {purpose} (allowed: {shown})")
        self.fields = {"purpose": purpose, "allowed_purposes": sorted(allowed)}


def _rate_key(principal: Principal) -> str:
    return f"verify:{principal.subject}"


def verify_limit(principal: Principal, default: int) -> int:
    """Verify requests per minute ``principal`` may make: a partner's own policy (in its
    token), else ``default`` (``RateLimits.verify_per_client``: terminals, operators)."""
    return principal.rate_limit if principal.rate_limit is not None else default


def refuse_if_over_limit(principal: Principal, limiter: RateLimiter, *, default: int) -> None:
    """Refuse (429), before any work and without a round trip, a client this process
    already saw over its verify limit in the current window."""
    limit = verify_limit(principal, default)
    retry_after = limiter.known_refusal(_rate_key(principal), limit=limit)
    if retry_after is not None:
        raise RateLimitedError(limit, retry_after)


def require_purpose(principal: Principal, purpose: str) -> None:
    """Refuse (403) a purpose ``principal`` may not verify; callers without a policy in
    their token (terminals, operators) may verify any."""
    if principal.purposes is not None and purpose not in principal.purposes:
        raise PurposeForbiddenError(purpose, principal.purposes)


async def _count(
    principal: Principal, limiter: RateLimiter, then_use: OneTimeUse | None, default: int
) -> Admission:
    return await admit(
        limiter,
        _rate_key(principal),
        limit=verify_limit(principal, default),
        counted_per="client",
        then_use=then_use,
    )


async def count_verify(principal: Principal, limiter: RateLimiter, *, default: int) -> None:
    """Count one verify request against ``principal``'s rate limit, or raise 429.

    For a request refused for another reason: refused requests count too, and the 429
    comes first, as if counted before anything else was checked.
    """
    await _count(principal, limiter, None, default)


async def count_verify_then_use(
    principal: Principal, limiter: RateLimiter, use: OneTimeUse, *, default: int
) -> bool:
    """Count one verify request (or raise 429) and, only if admitted, record ``use``:
    whether it was the first. On Redis both go in one round trip."""
    first_use = (await _count(principal, limiter, use, default)).first_use
    return bool(first_use)

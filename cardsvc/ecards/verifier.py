"""Online verification of QR tokens: the one verifier behind ``POST /v1/verify``.

The FastAPI route and the ASGI fast path (:mod:`cardsvc.api.fastpath`) both call
:meth:`OnlineVerifier.verify_online`, so they cannot drift apart.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio.to_thread

from cardsvc.auth.partners import (
    count_verify,
    count_verify_then_use,
    refuse_if_over_limit,
    require_purpose,
)
from cardsvc.auth.tokens import Principal
from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.qrtoken import (
    MAX_QR_TEXT,
    SCHEME_PREFIX,
    Purpose,
    QrToken,
    verify_qr_token,
)
from cardsvc.core.statuslist import Status
from cardsvc.core.trustlist import TrustAnchor, TrustList
from cardsvc.ecards.errors import TokenRejectedError
from cardsvc.ecards.views import ECardDirectory
from cardsvc.errors import CardsvcError
from cardsvc.keystore.service import KeyService
from cardsvc.publication import Publication
from cardsvc.ratelimit import RateLimiter
from cardsvc.registry.status import StatusLists
from cardsvc.replay import OneTimeUse, ReplayCache

#: Bounded leeway of online QR verification (tokens live about a minute).
QR_LEEWAY = timedelta(seconds=5)


class TrustListSource(Protocol):
    """Where the issuer's current signed trust list comes from (its publisher)."""

    def current(self, *, now: datetime) -> Publication: ...


class OnlineVerifier:
    """Checks QR tokens against the issuer's own trust list and live status in memory."""

    def __init__(
        self,
        keys: KeyService,
        directory: ECardDirectory,
        status: StatusLists,
        published: TrustListSource,
        replay: ReplayCache,
        rate_limiter: RateLimiter,
        *,
        issuer: str,
        status_base_uri: str,
        status_sync_interval: float,
        verify_per_client: int,
    ) -> None:
        self._keys = keys
        self._directory = directory
        self._status = status
        self._published = published
        self.replay = replay
        self.rate_limiter = rate_limiter
        #: Verify requests per minute of a client without a policy of its own.
        self.verify_per_client = verify_per_client
        self._issuer = issuer
        self._status_base_uri = status_base_uri
        self._sync_interval = status_sync_interval
        #: monotonic time of the last status sync run by online verify (throttle).
        self._last_status_sync = -1e9
        self._trust: tuple[str, TrustList] | None = None
        self._trust_checked = -float("inf")

    async def verify_online(
        self, token: str, purpose_name: str, principal: Principal, *, now: datetime
    ) -> dict[str, Any]:
        """The disclosed claims of a valid token, or a :class:`TokenRejectedError`. A
        caller is held to its rate limit (a partner's own, else ``verify_per_client``)
        and a partner to its purposes (``RateLimitedError``, ``PurposeForbiddenError``).

        Every check that needs no shared state runs first; then one step counts the
        request against the caller's rate limit and, only if it is admitted and the
        token passed every check, records the token's ``jti`` (on Redis: one round trip,
        on the event loop). So a refused request, or a token failing any check, never
        consumes its ``jti``; a refused request still counts, and a rate-limit refusal
        wins over any other. A caller already over its limit is refused before any work.
        """
        limiter, default = self.rate_limiter, self.verify_per_client
        refuse_if_over_limit(principal, limiter, default=default)
        try:
            require_purpose(principal, purpose_name)
            await self._sync_status()
            trust = self._current_trust_list(now)
            purpose = Purpose[purpose_name.upper()]
            checked = self.check(token, purpose=purpose, trust_list=trust, now=now)
            require_purpose(principal, checked.purpose.name.lower())
        except CardsvcError:
            await count_verify(principal, limiter, default=default)
            raise
        use = self.one_time_use(checked, now=now)
        if not await count_verify_then_use(principal, limiter, use, default=default):
            raise replayed()
        return checked.to_json(status_base_uri=self._status_base_uri)

    async def _sync_status(self) -> None:
        # Throttled here too, so most requests skip the thread hop entirely.
        tick = time.monotonic()
        if tick - self._last_status_sync >= max(self._sync_interval, 0.05):
            self._last_status_sync = tick
            await anyio.to_thread.run_sync(self._status.sync_due, self._sync_interval)

    def _current_trust_list(self, now: datetime) -> TrustList:
        cached = self.cached_trust_list()
        if cached is not None and not self.trust_due():
            return cached
        publication = self._published.current(now=now)
        return self.trust_list(now=now, published=(publication.etag, publication.body))

    def trust_list(self, *, now: datetime, published: tuple[str, str]) -> TrustList:
        """The issuer's own published trust list, verified against the root (cached)."""
        etag, body = published
        current = self._trust
        if current is not None and current[0] == etag:
            return current[1]
        anchor = TrustAnchor(self._keys.root_key())
        accepted = anchor.accept(body, now=now, leeway=QR_LEEWAY)
        self._trust = (etag, accepted)
        return accepted

    def verify(
        self, text: object, *, purpose: Purpose, trust_list: TrustList, now: datetime
    ) -> QrToken:
        """Verify a QR token online; :class:`TokenRejectedError` names the failed check.

        Checks: size, prefix, format, trust-list key and purpose, signature, claims,
        validity window (``QR_LEEWAY``), purpose, the card's and the e-card's live status
        (in memory), then one-time use of ``jti`` (blocking; the verify route records it
        on the event loop: :meth:`verify_online`).
        """
        token = self.check(text, purpose=purpose, trust_list=trust_list, now=now)
        use = self.one_time_use(token, now=now)
        if not use.cache.first_use(use.key, ttl_seconds=use.ttl_seconds):
            raise replayed()
        return token

    def one_time_use(self, token: QrToken, *, now: datetime) -> OneTimeUse:
        """The record of ``token``'s ``jti``, kept until it could no longer be accepted."""
        ttl = max(1, int(token.expires_at.timestamp() - now.timestamp() + 2 * QR_LEEWAY.seconds))
        return OneTimeUse(self.replay, "qr:" + token.jti_text, ttl)

    def check(
        self, text: object, *, purpose: Purpose, trust_list: TrustList, now: datetime
    ) -> QrToken:
        """Every check of :meth:`verify` but one-time use, which it leaves to the caller
        (and so consumes nothing)."""
        if not isinstance(text, str):
            raise TokenRejectedError("format", "the token must be text")
        if len(text) > MAX_QR_TEXT:
            raise TokenRejectedError("size", f"{len(text)} characters, at most {MAX_QR_TEXT}")
        if not text.startswith(SCHEME_PREFIX):
            if text.count(".") == 2 and text.startswith("eyJ"):
                raise TokenRejectedError("prefix", f"a JWT, not a {SCHEME_PREFIX} QR token")
            raise TokenRejectedError("prefix", f"not a {SCHEME_PREFIX} QR token")
        try:
            token = verify_qr_token(
                text, trust_list=trust_list, now=now, leeway=QR_LEEWAY, purpose=purpose
            )
        except VerificationError as exc:
            raise TokenRejectedError(exc.check, exc.detail) from None
        except DecodeError as exc:
            raise TokenRejectedError("format", exc.detail) from None
        except CoreError as exc:  # pragma: no cover - every core error is one of the above
            raise TokenRejectedError("format", exc.detail) from None
        if token.issuer != self._issuer:
            raise TokenRejectedError("issuer", "not issued by this issuer")
        view = self._directory.by_ref(token.ecard_ref, now=now)
        if view is None or view.status != (token.status_shard, token.status_idx):
            raise TokenRejectedError("ecard-unknown", "no such e-card")
        card_status, ecard_status = self._directory.live_status(view)
        if card_status is not Status.VALID:
            check = "card-suspended" if card_status is Status.SUSPENDED else "card-revoked"
            raise TokenRejectedError(check, f"the holder's card is {card_status.name.lower()}")
        if ecard_status is not Status.VALID:
            check = "ecard-suspended" if ecard_status is Status.SUSPENDED else "ecard-revoked"
            raise TokenRejectedError(check, f"the e-card is {ecard_status.name.lower()}")
        return token

    def cached_trust_list(self) -> TrustList | None:
        return self._trust[1] if self._trust is not None else None

    def trust_due(self) -> bool:
        """At most once a second: is it time to look for a newer trust list?"""
        tick = time.monotonic()
        if tick - self._trust_checked < 1.0 and self._trust is not None:
            return False
        self._trust_checked = tick
        return True


def replayed() -> TokenRejectedError:
    """The refusal of a token whose ``jti`` was already used."""
    return TokenRejectedError("replayed", "this token was already used")

"""The agent's offline cache: the verifier bundle under a pinned root key, in one directory.

The counter follows the issuer's signed verifier bundle (trust list and every status list
shard in one token, :mod:`cardsvc.core.bundle`) exactly as a partner's ``cardsvc verify``
does: :class:`cardsvc.core.fetch.BundleFetcher` asks for a delta with changed entries on
the held bundle, so a refresh after a thousand status changes among 1.4 billion cards is
~110 KiB instead of ~47 MiB, and a refresh with nothing new is a 304.

Layout of ``directory``::

    root.jwk                the pinned root public key (set once, out of band)
    bundle/                 the :class:`~cardsvc.core.verifier.OfflineVerifier`'s state:
                            the accepted bundle chain, re-verified at every start (so a
                            file tampered with on disk fails as a network answer would),
                            and the fetch memo (ETag, when the issuer last confirmed it)

Freshness: a card's status is as of the newer of the bundle's signed time and the last
time the issuer confirmed the held bundle current (a refresh that found nothing new).
Online counters keep that within seconds (:mod:`reader_agent.page.link`); offline the
age is shown and bounded by the caller.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cardsvc.core.bundle import Bundle
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.fetch import FETCH_FILE, BundleFetcher, Refresh
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.references import StatusReference
from cardsvc.core.statuslist import Status
from cardsvc.core.trustlist import TrustList
from cardsvc.core.verifier import STATE_FILE, OfflineVerifier
from reader_agent.errors import AgentError

__all__ = ["LEEWAY", "AgentCache", "CacheError", "CardStatus"]

#: Clock leeway for every signed time the agent checks (counter PCs drift).
LEEWAY: Final = timedelta(minutes=2)
#: The verifier's own staleness bound is not the counter's: callers bound the status age.
_NO_BUNDLE_AGE_LIMIT: Final = timedelta(days=3650)
_NAMED_STATUSES: Final = frozenset(s.value for s in Status)


class CacheError(AgentError):
    """The cache is missing something, or what was offered to it did not verify.

    ``check`` names the failed check (``no-root``, ``no-bundle``, ``rollback``,
    ``signature``, ``expired``, ``fetch``, ...) like cardsvc.core's VerificationError.
    """

    code = "cache-error"

    def __init__(self, detail: str, *, check: str) -> None:
        super().__init__(detail)
        self.check = check


@dataclass(frozen=True, kw_only=True, slots=True)
class CardStatus:
    """A card's entry in the held bundle, and how current it is."""

    status: Status | int  # 4- or 8-bit lists may carry values the draft does not name
    as_of: datetime  # the newer of the bundle's signed time and the issuer's confirmation
    confirmed: bool  # as_of is the issuer confirming the held bundle current
    bundle_version: int

    def age(self, now: datetime) -> timedelta:
        return max(timedelta(0), now - self.as_of)


class AgentCache:
    """The cache in ``directory``. The root key is pinned with :meth:`pin_root` once."""

    def __init__(
        self, directory: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.directory = directory
        self._clock = clock
        self._verifier: OfflineVerifier | None = None
        self._fetchers: dict[str, BundleFetcher] = {}

    @property
    def _root_path(self) -> Path:
        return self.directory / "root.jwk"

    @property
    def _state_dir(self) -> Path:
        return self.directory / "bundle"

    # -- root key -----------------------------------------------------------------------

    def pin_root(self, root: VerifyingKey) -> None:
        """Pin the root key. Refuses to replace a different pinned key (that is a
        re-pinning ceremony: delete the cache directory deliberately)."""
        current = self._load_root()
        if current is not None:
            if current.kid != root.kid:
                raise CacheError(
                    f"cache already pins root {current.kid}, not {root.kid}", check="root-pinned"
                )
            return
        jwk = {k: v for k, v in root.jwk().items() if k in ("kty", "crv", "x", "y")}
        try:
            write_atomically(self._root_path, json.dumps(jwk).encode())
        except OSError as exc:
            raise CacheError(f"cannot write {self._root_path}: {exc}", check="io") from None

    def root(self) -> VerifyingKey:
        """The pinned root key; CacheError('no-root') when none is pinned yet."""
        root = self._load_root()
        if root is None:
            raise CacheError(
                f"no root key pinned in {self.directory}: run `reader-agent cache update "
                "--root ROOT.jwk` once",
                check="no-root",
            )
        return root

    def _load_root(self) -> VerifyingKey | None:
        try:
            raw = self._root_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read {self._root_path}: {exc.strerror}", check="io") from None
        try:
            return VerifyingKey.from_jwk(json.loads(raw))
        except (ValueError, CoreError, AttributeError) as exc:
            raise CacheError(f"{self._root_path} is not a P-256 JWK: {exc}", check="root") from None

    # -- the bundle ---------------------------------------------------------------------

    @property
    def verifier(self) -> OfflineVerifier:
        """The offline verifier holding the bundle (loaded and re-verified on first use).

        A held chain that no longer verifies (damaged or edited on disk) is refused:
        CacheError('damaged'); :meth:`install` and :meth:`refresh` then start afresh.
        """
        if self._verifier is None:
            try:
                self._verifier = self._open_verifier()
            except CoreError as exc:
                raise CacheError(
                    f"the cached bundle in {self._state_dir} does not verify ({exc.detail}): "
                    "run `reader-agent cache update` to download a fresh one",
                    check="damaged",
                ) from None
        return self._verifier

    def _open_verifier(self) -> OfflineVerifier:
        return OfflineVerifier(
            self.root(), state_dir=self._state_dir, max_age=_NO_BUNDLE_AGE_LIMIT,
            leeway=LEEWAY, clock=self._clock,
        )  # fmt: skip

    def _updatable_verifier(self) -> OfflineVerifier:
        """The verifier, or a fresh one after moving a chain that does not verify aside
        (kept for inspection; the next bundle must verify from the pinned root)."""
        try:
            return self.verifier
        except CacheError as exc:
            if exc.check != "damaged":
                raise
        state = self._state_dir / STATE_FILE
        with contextlib.suppress(OSError):
            state.replace(state.with_name(f"{STATE_FILE}.damaged"))
        self._verifier = self._open_verifier()
        return self._verifier

    def install(self, token: str, *, now: datetime) -> Bundle:
        """Verify a bundle given whole (an exported file) and make it current."""
        verifier = self._updatable_verifier()
        try:
            return verifier.update(token.strip(), now=now)
        except VerificationError as exc:
            raise CacheError(f"bundle refused: {exc.detail}", check=exc.check) from None
        except CoreError as exc:
            raise CacheError(f"bundle refused: {exc.detail}", check="decode") from None
        except OSError as exc:
            raise CacheError(f"cannot write {self._state_dir}: {exc}", check="io") from None

    def refresh(self, url: str, *, now: datetime) -> Refresh:
        """One refresh from the bundle URL (a delta when one applies). Never raises for
        the network: a failed or refused refresh keeps the held bundle and says why."""
        fetcher = self._fetcher(url)
        return fetcher.refresh(now=now)

    def _fetcher(self, url: str) -> BundleFetcher:
        fetcher = self._fetchers.get(url)
        if fetcher is None:
            fetcher = BundleFetcher(
                self._updatable_verifier(), url, state_dir=self._state_dir, timeout=10.0,
                clock=self._clock,
            )  # fmt: skip
            self._fetchers[url] = fetcher
        return fetcher

    def bundle(self) -> Bundle:
        bundle = self.verifier.bundle
        if bundle is None:
            raise CacheError(
                "no verifier bundle cached: run `reader-agent cache update`", check="no-bundle"
            )
        return bundle

    def confirmed_at(self) -> datetime | None:
        """When the issuer last confirmed the held bundle current (any bundle URL)."""
        times = [f.confirmed_at for f in self._fetchers.values()]
        times += [self._persisted_confirmation()]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def _persisted_confirmation(self) -> datetime | None:
        # A new process has no fetcher yet: the memo on disk says when and from where.
        try:
            memo = json.loads((self._state_dir / FETCH_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        url = memo.get("url") if isinstance(memo, dict) else None
        return self._fetcher(url).confirmed_at if isinstance(url, str) else None

    # -- what the checks read -----------------------------------------------------------

    def trust_list(self, *, now: datetime) -> TrustList:
        """The held bundle's trust list, still within its validity at ``now``."""
        trust_list = self.bundle().trust_list
        if now > trust_list.expires_at + LEEWAY:
            raise CacheError(
                f"cached trust list expired at {trust_list.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                check="expired",
            )
        return trust_list

    def status(self, ref: StatusReference, *, now: datetime) -> CardStatus:
        """The card's status entry ``ref`` in the held bundle, and how current it is."""
        bundle = self.bundle()
        shard = bundle.status_lists.get(ref.uri)
        fresh_until = self.verifier.fresh_until(ref.uri)
        if shard is None or fresh_until is None:
            raise CacheError(f"the cached bundle holds no status list {ref.uri}",
                             check="no-status-list")  # fmt: skip
        if now > fresh_until + LEEWAY:
            raise CacheError(f"cached status list {ref.uri} expired", check="expired")
        try:
            value = shard.status_list.get(ref.idx)
        except CoreError as exc:
            raise CacheError(f"index {ref.idx}: {exc.detail}", check="index") from None
        confirmed = self.confirmed_at()
        as_of = bundle.issued_at
        if confirmed is not None and confirmed > as_of:
            as_of = confirmed
        return CardStatus(
            status=Status(value) if value in _NAMED_STATUSES else value,
            as_of=as_of,
            confirmed=as_of == confirmed,
            bundle_version=bundle.version,
        )

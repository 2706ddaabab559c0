"""Keep an :class:`~cardsvc.core.verifier.OfflineVerifier` current from the bundle URL.

Shared by partners (``cardsvc verify --bundle URL``) and the counter agent: the standard
library speaks HTTP, so this needs nothing beyond core's three dependencies.

A refresh asks for a delta on the held bundle (``?since=<held version>&delta=entries``,
``If-None-Match`` with the ETag it came with): changed shards come as their changed
entries when that is smaller. A 304 (or the held version answered again) keeps the held
bundle and counts as the issuer confirming it current. A delta that does not apply
(another base, an entry patch that does not rebuild the issuer's list) is followed by a
full bundle. A fetch that fails, or a bundle the verifier refuses, keeps the held bundle.

State on disk, beside the verifier's (:data:`FETCH_FILE`): the URL, version and ETag the
held bundle came with, and when the issuer last confirmed it current. It is only an
optimisation and a report: a missing or damaged file costs one full download.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from cardsvc.core.bundle import BUNDLE_TYP, Bundle
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.files import write_atomically
from cardsvc.core.statuspatch import StatusPatchError
from cardsvc.core.verifier import OfflineVerifier

__all__ = ["FETCH_FILE", "MAX_BUNDLE_DOWNLOAD", "BundleFetcher", "Refresh", "RefreshOutcome"]

MAX_BUNDLE_DOWNLOAD: Final = 256 * 1024 * 1024
#: Beside the verifier's state: the URL, version and ETag the held bundle came with.
FETCH_FILE: Final = "bundle-fetch.json"
_MEDIA_TYPE: Final = "application/" + BUNDLE_TYP


class RefreshOutcome(StrEnum):
    """What one refresh did to the held bundle."""

    UPDATED = "updated"  # a new bundle (full or delta) is in use
    UNCHANGED = "unchanged"  # the issuer confirmed the held version current
    FAILED = "failed"  # no answer, an HTTP error or an unreadable body: held bundle kept
    REFUSED = "refused"  # the answer did not verify: held bundle kept


@dataclass(frozen=True, kw_only=True, slots=True)
class Refresh:
    """The result of :meth:`BundleFetcher.refresh`, for the caller to report."""

    outcome: RefreshOutcome
    bundle: Bundle | None  # the bundle in use afterwards
    downloaded: int  # body bytes read, over every request of this refresh
    detail: str  # for the operator: what came, or why nothing did

    @property
    def current(self) -> bool:
        """The issuer answered, and the bundle in use is its current one."""
        return self.outcome in (RefreshOutcome.UPDATED, RefreshOutcome.UNCHANGED)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Answer:
    token: str | None  # None: nothing new
    etag: str | None
    size: int
    note: str


class _FetchError(Exception):
    """The bundle URL gave no usable answer (network, HTTP status, size, encoding)."""


def with_since(url: str, since: int | None, *, entries: bool = False) -> str:
    """``url`` asking for a delta since version ``since`` (other query parameters kept).

    ``entries``: the delta may carry changed entries instead of whole shards
    (``delta=entries``), which :class:`OfflineVerifier` applies.
    """
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("since", "delta")]
    if since is not None:
        query.append(("since", str(since)))
        if entries:
            query.append(("delta", "entries"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class BundleFetcher:
    """Refreshes ``verifier`` from ``url`` (``http(s)://``); state in ``state_dir``.

    ``state_dir`` is usually the verifier's own; ``None`` keeps nothing across runs.
    """

    def __init__(
        self,
        verifier: OfflineVerifier,
        url: str,
        *,
        state_dir: Path | None = None,
        timeout: float = 30.0,
        max_download: int = MAX_BUNDLE_DOWNLOAD,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the bundle URL must be http(s)")
        self.verifier = verifier
        self.url = url
        self._state_dir = state_dir
        self._timeout = timeout
        self._max_download = max_download
        self._clock = clock
        self._memory = self._load_memo()

    @property
    def confirmed_at(self) -> datetime | None:
        """When the issuer last said the held bundle is its current one (``None``: never,
        or the held bundle came from elsewhere)."""
        memo = self._memo()
        at = memo.get("confirmed_at")
        if not isinstance(at, int) or isinstance(at, bool):
            return None
        return datetime.fromtimestamp(at, UTC)

    def refresh(self, *, now: datetime | None = None) -> Refresh:
        """One refresh: a delta on the held bundle if any, a full bundle if it does not apply."""
        held = self.verifier.bundle
        since = self.verifier.delta_base
        etag = self._held_etag(held) if since is not None else None
        attempts = [since, None] if since is not None else [None]
        downloaded = 0
        for attempt in attempts:
            try:
                answer = self._get(attempt, etag if attempt is not None else None)
            except _FetchError as exc:
                return Refresh(outcome=RefreshOutcome.FAILED, bundle=held,
                               downloaded=downloaded, detail=str(exc))  # fmt: skip
            downloaded += answer.size
            if answer.token is None:
                self._remember(held, answer.etag if held else None)
                return Refresh(outcome=RefreshOutcome.UNCHANGED, bundle=held,
                               downloaded=downloaded, detail=answer.note)  # fmt: skip
            try:
                bundle = self.verifier.update(answer.token, now=now)
            except (StatusPatchError, VerificationError) as exc:
                delta_mismatch = isinstance(exc, StatusPatchError) or exc.check == "bundle-base"
                if delta_mismatch and attempt is not None:
                    continue  # then a full bundle
                return self._refused(exc, downloaded)
            except CoreError as exc:
                return self._refused(exc, downloaded)
            self._remember(bundle, answer.etag)
            kind = "full" if bundle.base is None else f"delta from {bundle.base}"
            if bundle.patched:
                kind += f", {len(bundle.patched)} shards patched by entry"
            detail = f"version {bundle.version} ({kind}, {downloaded} bytes)"
            return Refresh(outcome=RefreshOutcome.UPDATED, bundle=bundle,
                           downloaded=downloaded, detail=detail)  # fmt: skip
        raise AssertionError("unreachable: the full attempt returns")  # pragma: no cover

    def _refused(self, exc: CoreError, downloaded: int) -> Refresh:
        return Refresh(outcome=RefreshOutcome.REFUSED, bundle=self.verifier.bundle,
                       downloaded=downloaded, detail=f"bundle refused: {exc.detail}")  # fmt: skip

    def _get(self, since: int | None, etag: str | None) -> _Answer:
        """GET the bundle; ``None`` token when nothing is new (its body is then not read)."""
        headers = {"Accept": f"{_MEDIA_TYPE}, application/jwt"}
        if etag:
            headers["If-None-Match"] = etag
        url = with_since(self.url, since, entries=True)
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                answered = response.headers.get("Bundle-Version")
                new_etag = response.headers.get("ETag")
                if since is not None and answered == str(since):
                    return _Answer(token=None, etag=new_etag, size=0, note="same version")
                data: bytes = response.read(self._max_download + 1)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 304:
                    return _Answer(token=None, etag=etag, size=0, note="304 not modified")
                raise _FetchError(f"{self.url} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # URLError is an OSError
            raise _FetchError(f"cannot fetch {self.url}: {exc}") from None
        if len(data) > self._max_download:
            raise _FetchError(f"bundle at {self.url} is larger than {self._max_download} bytes")
        try:
            token = data.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _FetchError(f"bundle at {self.url} is not ASCII (not a compact JWS)") from None
        return _Answer(token=token, etag=new_etag, size=len(data), note="")

    # -- state ----------------------------------------------------------------------------

    def _memo(self) -> dict[str, object]:
        """The memo, if it is about the held bundle from this URL (else empty)."""
        memo, held = self._memory, self.verifier.bundle
        if memo.get("url") != self.url or held is None or memo.get("version") != held.version:
            return {}
        return memo

    def _load_memo(self) -> dict[str, object]:
        if self._state_dir is None:
            return {}
        try:
            memo = json.loads((self._state_dir / FETCH_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return memo if isinstance(memo, dict) else {}

    def _held_etag(self, held: Bundle | None) -> str | None:
        """The ETag the held bundle came with from this URL (``None`` if unknown)."""
        if held is None:
            return None
        etag = self._memo().get("etag")
        return etag if isinstance(etag, str) else None

    def _remember(self, bundle: Bundle | None, etag: str | None) -> None:
        if bundle is None:
            return
        memo: dict[str, object] = {
            "url": self.url,
            "version": bundle.version,
            "etag": etag,
            "confirmed_at": int(self._clock().timestamp()),
        }
        self._memory = memo
        if self._state_dir is None:
            return
        # Only an optimisation and a report: if it is lost the next refresh is a full one.
        with contextlib.suppress(OSError):
            write_atomically(self._state_dir / FETCH_FILE, json.dumps(memo).encode())

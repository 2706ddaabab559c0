"""The agent's offline cache: the trust list (under a pinned root key, with rollback
protection) and status list tokens, as files in one directory.

Layout of ``directory``::

    root.jwk              the pinned root public key (set once, out of band)
    trust-list.jwt        the newest accepted trust list
    trust-anchor.json     {"accepted_sequence": n}: survives restarts, so a replayed older
                          trust list is refused even after the agent restarts
    status/<sha256>.jwt   one Status List Token per list URI

Everything written is verified first and written atomically (0600). Reading verifies again:
a file tampered with on disk fails the same checks a network answer would.

Fetching: ``GET {issuer}/v1/trust-list`` exists on the issuer today. The issuer has no
status list endpoint yet, so status list tokens are loaded from any URL or file given
(:func:`fetch_text`), e.g. ``file.jwt`` exported by the issuer or a CDN URL.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.statuslist import StatusListToken, verify_status_list_token
from cardsvc.core.trustlist import TrustAnchor, TrustList
from reader_agent.errors import AgentError

__all__ = ["AgentCache", "CacheError", "StatusEntry", "fetch_text"]

#: Clock leeway for every signed time the agent checks (counter PCs drift).
LEEWAY: Final = timedelta(minutes=2)
_MAX_FETCH: Final = 8 * 1024 * 1024


class CacheError(AgentError):
    """The cache is missing something, or what was offered to it did not verify.

    ``check`` names the failed check (``no-root``, ``no-trust-list``, ``rollback``,
    ``signature``, ``expired``, ``fetch``, ...) like cardsvc.core's VerificationError.
    """

    code = "cache-error"

    def __init__(self, detail: str, *, check: str) -> None:
        super().__init__(detail)
        self.check = check


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusEntry:
    """A verified cached status list token and where it came from."""

    uri: str
    token: StatusListToken


class AgentCache:
    """The cache in ``directory``. The root key is pinned with :meth:`pin_root` once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def _root_path(self) -> Path:
        return self.directory / "root.jwk"

    @property
    def _trust_list_path(self) -> Path:
        return self.directory / "trust-list.jwt"

    @property
    def _anchor_path(self) -> Path:
        return self.directory / "trust-anchor.json"

    def _status_path(self, uri: str) -> Path:
        return self.directory / "status" / (hashlib.sha256(uri.encode()).hexdigest() + ".jwt")

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
        self._write(self._root_path, json.dumps(jwk).encode())

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

    # -- trust list ---------------------------------------------------------------------

    def accepted_sequence(self) -> int:
        try:
            obj = json.loads(self._anchor_path.read_bytes())
            seq = obj["accepted_sequence"]
        except FileNotFoundError:
            return -1
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Fail closed: a damaged anchor must not silently re-open rollback.
            raise CacheError(f"{self._anchor_path} is damaged: {exc}", check="anchor") from None
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise CacheError(f"{self._anchor_path} is damaged", check="anchor")
        return seq

    def update_trust_list(self, token: str, *, now: datetime) -> TrustList:
        """Verify ``token`` under the pinned root, refuse rollback, then store it."""
        anchor = TrustAnchor(self.root(), accepted_sequence=self.accepted_sequence())
        current = self._read_text(self._trust_list_path)
        if current is not None:
            try:
                anchor.accept(current, now=now, leeway=LEEWAY)
            except CoreError:
                # An expired current list must not block installing a newer one; the
                # persisted sequence still guards against rollback.
                anchor = TrustAnchor(self.root(), accepted_sequence=self.accepted_sequence())
        try:
            trust_list = anchor.accept(token.strip(), now=now, leeway=LEEWAY)
        except VerificationError as exc:
            raise CacheError(f"trust list refused: {exc.detail}", check=exc.check) from None
        except CoreError as exc:
            raise CacheError(f"trust list refused: {exc.detail}", check="decode") from None
        self._write(self._trust_list_path, token.strip().encode())
        self._write(
            self._anchor_path, json.dumps({"accepted_sequence": trust_list.sequence}).encode()
        )
        return trust_list

    def trust_list(self, *, now: datetime) -> TrustList:
        """The cached trust list, verified again now (expired -> CacheError('expired'))."""
        token = self._read_text(self._trust_list_path)
        if token is None:
            raise CacheError(
                "no cached trust list: run `reader-agent cache update`", check="no-trust-list"
            )
        try:
            trust_list = TrustList.verify(token, root=self.root(), now=now, leeway=LEEWAY)
        except VerificationError as exc:
            raise CacheError(f"cached trust list: {exc.detail}", check=exc.check) from None
        except CoreError as exc:
            raise CacheError(f"cached trust list: {exc.detail}", check="decode") from None
        if trust_list.sequence < self.accepted_sequence():
            raise CacheError(
                "cached trust list is older than the accepted sequence (file rolled back)",
                check="rollback",
            )
        return trust_list

    # -- status lists -------------------------------------------------------------------

    def add_status_list(self, token: str, *, now: datetime) -> StatusEntry:
        """Verify a Status List Token with the cached trust list and store it under its
        ``sub`` (the list's URI). An older token than the cached one is refused."""
        entry = self._verify_status(token.strip(), now=now)
        existing = self.find_status_list(entry.uri, now=now)
        if existing is not None and entry.token.iat < existing.token.iat:
            raise CacheError(
                f"status list {entry.uri} issued {entry.token.iat:%Y-%m-%dT%H:%M:%SZ} is older "
                f"than the cached one ({existing.token.iat:%Y-%m-%dT%H:%M:%SZ})",
                check="rollback",
            )
        self._write(self._status_path(entry.uri), token.strip().encode())
        return entry

    def status_list(self, uri: str, *, now: datetime) -> StatusEntry:
        """The cached, re-verified status list token for ``uri``."""
        entry = self.find_status_list(uri, now=now)
        if entry is None:
            raise CacheError(f"no cached status list for {uri}", check="no-status-list")
        return entry

    def find_status_list(self, uri: str, *, now: datetime) -> StatusEntry | None:
        """As :meth:`status_list`, but None when nothing is cached for ``uri``."""
        token = self._read_text(self._status_path(uri))
        if token is None:
            return None
        return self._verify_status(token, now=now, expected_sub=uri)

    def _verify_status(
        self, token: str, *, now: datetime, expected_sub: str | None = None
    ) -> StatusEntry:
        trust_list = self.trust_list(now=now)
        try:
            verified = verify_status_list_token(
                token, trust_list=trust_list, expected_sub=expected_sub, now=now, leeway=LEEWAY
            )
        except VerificationError as exc:
            raise CacheError(f"status list: {exc.detail}", check=exc.check) from None
        except CoreError as exc:
            raise CacheError(f"status list: {exc.detail}", check="decode") from None
        return StatusEntry(uri=verified.sub, token=verified)

    # -- files --------------------------------------------------------------------------

    def _read_text(self, path: Path) -> str | None:
        try:
            return path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"cannot read {path}: {exc}", check="io") from None

    def _write(self, path: Path, data: bytes) -> None:
        try:
            write_atomically(path, data)
        except OSError as exc:
            raise CacheError(f"cannot write {path}: {exc.strerror}", check="io") from None


def fetch_text(source: str, *, timeout: float = 10.0) -> str:
    """Text from an ``http(s)://`` URL or a local file path (status lists have no issuer
    endpoint yet, so a file exported by the issuer works too). Raises CacheError('fetch')."""
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(source, headers={"Accept": "*/*"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                body: bytes = answer.read(_MAX_FETCH + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise CacheError(f"cannot fetch {source}: {exc}", check="fetch") from None
    else:
        try:
            with open(source, "rb") as handle:
                body = handle.read(_MAX_FETCH + 1)
        except OSError as exc:
            raise CacheError(f"cannot read {source}: {exc.strerror}", check="fetch") from None
    if len(body) > _MAX_FETCH:
        raise CacheError(f"{source} is larger than {_MAX_FETCH} bytes", check="fetch")
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CacheError(f"{source} is not a compact JWS (non-ASCII)", check="fetch") from None

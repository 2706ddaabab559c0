"""The offline root as the online issuer sees it: a pinned public key and the installed list.

In offline-root mode the issuer holds no root private key. It pins the root's public JWK
(written by the key ceremony) and serves the last trust list the offline root signed and
``cardsvc keys import-trust-list`` installed. Both are small files, replaced atomically.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.files import write_atomically
from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.trustlist import MAX_TRUST_LIST_SIZE, TRUST_LIST_TYP, TrustList
from cardsvc.errors import ConfigurationError, CorruptKeyStoreError, TrustListNotInstalledError


@dataclass(frozen=True)
class InstalledTrustList:
    """The signed token as installed and what it says (its signature checked on reading)."""

    token: str
    trust_list: TrustList


def read_trust_list_unchecked_times(token: str, root: VerifyingKey) -> TrustList:
    """Verify the root's signature and decode, without looking at the clock."""

    def root_only(header: Mapping[str, Any]) -> VerifyingKey:
        if header.get("kid") != root.kid:
            raise VerificationError("key-unknown", "not signed by the pinned root key")
        return root

    verified = verify_jws(
        token, typ=TRUST_LIST_TYP, key_for=root_only, max_size=MAX_TRUST_LIST_SIZE
    )
    return TrustList.from_claims(verified.claims)


class OfflineRoot:
    """The pinned root public key and the trust list installed under it."""

    def __init__(self, root_file: Path, trust_list_file: Path) -> None:
        self.root_file = root_file
        self.trust_list_file = trust_list_file
        self._lock = threading.Lock()
        self._root: VerifyingKey | None = None
        self._installed: tuple[tuple[int, int, int], InstalledTrustList] | None = None

    def __repr__(self) -> str:
        return f"OfflineRoot({str(self.root_file)!r}, {str(self.trust_list_file)!r})"

    def root(self) -> VerifyingKey:
        if self._root is None:
            try:
                raw = self.root_file.read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"offline root: cannot read the pinned root key {self.root_file} "
                    f"({exc.strerror}); it is the root JWK the key ceremony wrote "
                    "(CARDSVC_ROOT_KEY_FILE)"
                ) from None
            try:
                self._root = VerifyingKey.from_jwk(json.loads(raw))
            except (ValueError, CoreError) as exc:
                raise CorruptKeyStoreError(self.root_file, f"not a root JWK: {exc}") from None
        return self._root

    def installed(self) -> InstalledTrustList | None:
        """The installed trust list, or ``None`` before the first import."""
        try:
            st = self.trust_list_file.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._installed
            if cached is not None and cached[0] == stamp:
                return cached[1]
            token = self.trust_list_file.read_text(encoding="ascii", errors="replace").strip()
            try:
                trust_list = read_trust_list_unchecked_times(token, self.root())
            except CoreError as exc:
                raise CorruptKeyStoreError(
                    self.trust_list_file, f"installed trust list does not verify: {exc}"
                ) from None
            installed = InstalledTrustList(token=token, trust_list=trust_list)
            self._installed = (stamp, installed)
            return installed

    def require_installed(self) -> InstalledTrustList:
        installed = self.installed()
        if installed is None:
            raise TrustListNotInstalledError(self.trust_list_file)
        return installed

    def install(self, token: str) -> None:
        self.trust_list_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.trust_list_file, token.encode("ascii") + b"\n")

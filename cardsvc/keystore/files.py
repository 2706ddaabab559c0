"""File key store: encrypted PKCS#8 private keys and a JSON index, all mode 0600.

Layout under the key directory::

    index.json            metadata of every key, with each private file's SHA-256
    private/<kid>.pem     PKCS#8, encrypted with the store passphrase

Every write goes to a temporary file in the same directory, is fsynced and renamed over
the target, so a crash leaves either the old file or the new one, never half a key.
The index records each private file's digest, so a truncated, edited or swapped file is
reported as such rather than as a wrong passphrase.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.errors import CoreError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import ES256, KeyPurpose, VerifyingKey
from cardsvc.core.signing import LocalSigner, Signer, Sm2Signer
from cardsvc.core.sm2 import SM2SM3, Sm2PrivateKey
from cardsvc.errors import (
    CorruptKeyStoreError,
    InsecurePermissionsError,
    KeyNotFoundError,
    KeyStoreError,
    KeyStoreLockedError,
    KeyStoreNotInitialisedError,
    WrongPassphraseError,
)
from cardsvc.keystore.records import KeyRecord

INDEX_VERSION = 1
#: Key files are a few hundred bytes; refuse to read anything much larger.
MAX_FILE_SIZE = 64 * 1024


def _check_private(path: Path, *, directory: bool = False) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecurePermissionsError(path, mode)
    if not directory and not path.is_file():
        raise CorruptKeyStoreError(path, "is not a regular file")


def _read_small(path: Path) -> bytes:
    try:
        _check_private(path)
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise CorruptKeyStoreError(path, "file is missing") from None
    except IsADirectoryError:
        raise CorruptKeyStoreError(path, "is not a regular file") from None
    if len(data) > MAX_FILE_SIZE:
        raise CorruptKeyStoreError(path, f"larger than {MAX_FILE_SIZE} bytes")
    return data


class FileKeyBackend:
    """Keys as encrypted files in one directory."""

    def __init__(self, directory: Path, passphrase: bytes | None) -> None:
        self.directory = directory
        self._passphrase = passphrase
        self._signers: dict[str, Signer] = {}
        self._records: tuple[tuple[int, int, int], list[KeyRecord]] | None = None

    def __repr__(self) -> str:
        return f"FileKeyBackend({str(self.directory)!r})"

    @property
    def index_path(self) -> Path:
        return self.directory / "index.json"

    @property
    def private_dir(self) -> Path:
        return self.directory / "private"

    def _private_path(self, kid: str) -> Path:
        return self.private_dir / f"{kid}.pem"

    def exists(self) -> bool:
        return self.index_path.exists()

    def _load_index(self) -> dict[str, Any]:
        if not self.index_path.exists():
            raise KeyStoreNotInitialisedError(self.directory)
        if self.private_dir.exists():
            _check_private(self.private_dir, directory=True)
        raw = _read_small(self.index_path)
        try:
            index = json.loads(raw)
            if not isinstance(index, dict) or index.get("version") != INDEX_VERSION:
                raise ValueError(f"not a version {INDEX_VERSION} key store index")
            if not isinstance(index.get("keys"), list):
                raise ValueError("keys must be a list")
            seq = index.get("trust_list_sequence")
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise ValueError("trust_list_sequence must be an integer")
            for entry in index["keys"]:
                if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                    raise ValueError("each key needs its file's sha256")
                KeyRecord.from_json(entry)
        except (ValueError, KeyError, TypeError, CoreError) as exc:
            raise CorruptKeyStoreError(self.index_path, f"unreadable index: {exc}") from None
        return index

    def records(self) -> list[KeyRecord]:
        # Every authenticated request and every signature asks for the records: parse the
        # index again only when it changed (it is only ever replaced by an atomic rename).
        try:
            st = self.index_path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        cached = self._records
        if stamp is not None and cached is not None and cached[0] == stamp:
            return list(cached[1])
        records = [KeyRecord.from_json(entry) for entry in self._load_index()["keys"]]
        if stamp is not None:
            self._records = (stamp, records)
        return list(records)

    def trust_list_sequence(self) -> int:
        if not self.exists():
            return -1
        seq: int = self._load_index()["trust_list_sequence"]
        return seq

    def _require_passphrase(self) -> bytes:
        if not self._passphrase:
            raise KeyStoreLockedError(
                "no key store passphrase: set CARDSVC_KEY_PASSPHRASE or "
                "CARDSVC_KEY_PASSPHRASE_FILE (or CARDSVC_DEV_MODE=1 for development only)"
            )
        return self._passphrase

    def _ensure_dirs(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.private_dir.mkdir(mode=0o700, exist_ok=True)
        _check_private(self.private_dir, directory=True)

    def generate(self, purpose: KeyPurpose, *, alg: str = ES256) -> VerifyingKey:
        passphrase = self._require_passphrase()
        self._ensure_dirs()
        if alg == SM2SM3:
            # SM2 (cardsvc[sm]): encrypted PKCS#8 too, written by the SM2 library.
            sm2_key = Sm2PrivateKey.generate()
            sm2_signer = Sm2Signer(sm2_key)
            write_atomically(self._private_path(sm2_signer.kid), sm2_key.to_pem(passphrase))
            self._signers[sm2_signer.kid] = sm2_signer
            return sm2_signer.verifying_key()
        if alg != ES256:
            raise KeyStoreError(f"the file key store makes ES256 or SM2SM3 keys, not {alg}")
        private_key = ec.generate_private_key(ec.SECP256R1())
        key = VerifyingKey(public_key=private_key.public_key())
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        write_atomically(self._private_path(key.kid), pem)
        self._signers[key.kid] = LocalSigner(private_key)
        return key

    def commit(self, records: Sequence[KeyRecord], *, trust_list_sequence: int) -> None:
        self._ensure_dirs()
        entries = []
        for record in records:
            path = self._private_path(record.kid)
            digest = hashlib.sha256(_read_small(path)).hexdigest()
            entries.append({**record.to_json(), "sha256": digest})
        index = {
            "version": INDEX_VERSION,
            "trust_list_sequence": trust_list_sequence,
            "keys": entries,
        }
        write_atomically(self.index_path, json.dumps(index, indent=2).encode() + b"\n")

    def signer(self, kid: str) -> Signer:
        cached = self._signers.get(kid)
        if cached is not None:
            return cached
        entry = next((e for e in self._load_index()["keys"] if e["kid"] == kid), None)
        if entry is None:
            raise KeyNotFoundError(kid)
        path = self._private_path(kid)
        data = _read_small(path)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CorruptKeyStoreError(path, "file was modified, truncated or replaced")
        if KeyRecord.from_json(entry).key.alg == SM2SM3:
            return self._sm2_signer(kid, path, data)
        try:
            private_key = serialization.load_pem_private_key(
                data, password=self._require_passphrase()
            )
        except TypeError:
            raise CorruptKeyStoreError(path, "private key is not encrypted") from None
        except ValueError:
            # The digest matched the one written with the key, so the bytes are ours:
            # a decryption failure can only be the passphrase.
            raise WrongPassphraseError(path) from None
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise CorruptKeyStoreError(path, "not a P-256 private key")
        signer = LocalSigner(private_key)
        if signer.kid != kid:
            raise CorruptKeyStoreError(path, "private key does not match its kid")
        self._signers[kid] = signer
        return signer

    def _sm2_signer(self, kid: str, path: Path, data: bytes) -> Signer:
        try:
            private_key = Sm2PrivateKey.from_pem(data, self._require_passphrase())
        except ValueError:
            # As for ES256: the digest matched, so the bytes are ours and it is the passphrase.
            raise WrongPassphraseError(path) from None
        signer = Sm2Signer(private_key)
        if signer.kid != kid:
            raise CorruptKeyStoreError(path, "private key does not match its kid")
        self._signers[kid] = signer
        return signer

"""The clerks who may sign in at this counter: their issuer keys, sealed under their own
password, and the count of wrong passwords.

Every clerk is an operator client of the issuer with role ``clerk`` (registered by the
issuer's operator with ``cardsvc clients create operator --role clerk --jwk ...``); the
clerk proves themselves to the issuer with ``private_key_jwt``, exactly as the terminal
does. The agent keeps, per clerk, one file ``clerks/<client id>.json`` in its state
directory holding the client id, the display name printed on receipts, and the private
key sealed under the clerk's password:

- the key is stored as PKCS#8 DER, encrypted with AES-256-GCM under a key derived from
  the password with scrypt (N=2^15, r=8, p=1: about 32 MiB and 0.1 s per try, so a stolen
  file resists guessing); the client id and display name are the associated data, so a
  sealed key cannot be moved under another clerk's name;
- a wrong password is counted in the same file (written atomically, so a restart of the
  agent does not reset it); after :data:`MAX_FAILURES` wrong passwords in a row the clerk
  is locked out for :data:`LOCKOUT`, and no password is tried during that time;
- an unknown client id and a wrong password get the same refusal, so the sign-in form
  does not tell which clerk ids exist;
- the password is never stored, logged or echoed; it only derives the key.

Why a key per clerk rather than a password checked by the issuer: the issuer knows
clients only by public key (no shared secrets on the server), and the clerk's token then
names the clerk as the actor in the issuer's audit log for everything done with it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cardsvc.core.errors import CoreError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import b64url_decode, b64url_encode
from cardsvc.core.signing import LocalSigner
from reader_agent.errors import AgentError

__all__ = [
    "LOCKOUT",
    "MAX_FAILURES",
    "ClerkError",
    "ClerkKey",
    "ClerkLockedError",
    "ClerkStore",
    "WrongPasswordError",
]

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 8
_SCRYPT_N = 2**15
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ClerkError(AgentError):
    """A clerk's enrolment or sign-in cannot go ahead."""

    code = "clerk"


class WrongPasswordError(ClerkError):
    """Unknown clerk id or wrong password (one answer for both); ``tries_left`` before a
    lock-out, ``None`` for an unknown id."""

    code = "clerk-wrong-password"

    def __init__(self, *, tries_left: int | None) -> None:
        super().__init__("unknown clerk id or wrong password")
        self.tries_left = tries_left


class ClerkLockedError(ClerkError):
    """Too many wrong passwords: no try until ``until``."""

    code = "clerk-locked"

    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked after too many wrong passwords until {until.isoformat()}")
        self.until = until


@dataclass(frozen=True, kw_only=True)
class ClerkKey:
    """An unlocked clerk: who they are and the key that proves it to the issuer."""

    client_id: str
    display_name: str
    signer: LocalSigner

    def __repr__(self) -> str:  # never the key
        return f"ClerkKey({self.client_id!r}, {self.display_name!r})"


def _kdf(password: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(password.encode())


def _aad(client_id: str, display_name: str) -> bytes:
    return json.dumps([client_id, display_name], ensure_ascii=False).encode()


class ClerkStore:
    """``<state_dir>/clerks/``: one sealed key per clerk; thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "clerks"
        self._lock = threading.Lock()

    def _path(self, client_id: str) -> Path | None:
        if not _CLIENT_ID.fullmatch(client_id):
            return None
        return self.directory / f"{client_id}.json"

    def enrol(
        self,
        *,
        client_id: str,
        display_name: str,
        private_key: ec.EllipticCurvePrivateKey,
        password: str,
    ) -> None:
        """Seal ``private_key`` under ``password`` (replacing an earlier enrolment)."""
        path = self._path(client_id)
        if path is None:
            raise ClerkError("a clerk id is 1 to 64 letters, digits, '.', '_' or '-'")
        name = display_name.strip()
        if not 1 <= len(name) <= 64:
            raise ClerkError("a clerk's display name is 1 to 64 characters")
        if len(password) < MIN_PASSWORD:
            raise ClerkError(f"a clerk's password has at least {MIN_PASSWORD} characters")
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ClerkError("the clerk's key must be an EC P-256 key")
        salt, nonce = os.urandom(16), os.urandom(12)
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        sealed = AESGCM(_kdf(password, salt)).encrypt(nonce, der, _aad(client_id, name))
        record = {
            "client_id": client_id, "display_name": name,
            "kdf": {"name": "scrypt", "n": _SCRYPT_N, "r": 8, "p": 1, "salt": b64url_encode(salt)},
            "nonce": b64url_encode(nonce), "sealed_key": b64url_encode(sealed),
            "failures": 0, "locked_until": None,
        }  # fmt: skip
        with self._lock:
            write_atomically(path, json.dumps(record, ensure_ascii=False, indent=1).encode())

    def names(self) -> dict[str, str]:
        """Enrolled clerks: client id -> display name."""
        out: dict[str, str] = {}
        with self._lock:
            for path in sorted(self.directory.glob("*.json")):
                record = self._read(path)
                if record is not None:
                    out[str(record["client_id"])] = str(record["display_name"])
        return out

    def unlock(self, client_id: str, password: str, *, now: datetime) -> ClerkKey:
        """The clerk's key, or WrongPasswordError / ClerkLockedError (counted)."""
        path = self._path(client_id)
        with self._lock:
            record = self._read(path) if path is not None else None
            if path is None or record is None:
                raise WrongPasswordError(tries_left=None)
            locked = record.get("locked_until")
            if isinstance(locked, str):
                until = datetime.fromisoformat(locked)
                if now < until:
                    raise ClerkLockedError(until)
            try:
                kdf = record["kdf"]
                key = _kdf(password, b64url_decode(str(kdf["salt"]), what="salt"))
                der = AESGCM(key).decrypt(
                    b64url_decode(str(record["nonce"]), what="nonce"),
                    b64url_decode(str(record["sealed_key"]), what="sealed key"),
                    _aad(str(record["client_id"]), str(record["display_name"])),
                )
            except InvalidTag:
                failures = int(record.get("failures") or 0) + 1
                record["failures"] = failures
                if failures >= MAX_FAILURES:
                    until = now + LOCKOUT
                    record["failures"], record["locked_until"] = 0, until.isoformat()
                    write_atomically(path, json.dumps(record, ensure_ascii=False).encode())
                    raise ClerkLockedError(until) from None
                record["locked_until"] = None
                write_atomically(path, json.dumps(record, ensure_ascii=False).encode())
                raise WrongPasswordError(tries_left=MAX_FAILURES - failures) from None
            except (KeyError, TypeError, ValueError, CoreError) as exc:
                raise ClerkError(f"the clerk file {path.name} is damaged: {exc}") from None
            if record.get("failures") or record.get("locked_until"):
                record["failures"], record["locked_until"] = 0, None
                write_atomically(path, json.dumps(record, ensure_ascii=False).encode())
        private = serialization.load_der_private_key(der, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ClerkError(f"the clerk file {path.name} holds no EC key")
        return ClerkKey(client_id=str(record["client_id"]),
                        display_name=str(record["display_name"]),
                        signer=LocalSigner(private))  # fmt: skip

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "client_id" in record else None

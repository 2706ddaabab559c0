"""Choosing and opening the key store backend: the file store, or a PKCS#11 token.

The settings name one of the two (:meth:`cardsvc.settings.Settings.key_store`); nothing
here falls back from one to the other. A PKCS#11 store that cannot be opened raises a
typed :class:`~cardsvc.errors.HsmError` naming what is wrong (module, token, PIN, a key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cardsvc.errors import ConfigurationError, HsmPinError
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.files import FileKeyBackend

#: The longest PIN read from a PIN file (its first line).
MAX_PIN_FILE = 4096


@dataclass(frozen=True, kw_only=True)
class FileStoreConfig:
    """Encrypted key files in ``directory``."""

    directory: Path
    passphrase: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class Pkcs11Config:
    """One token of a PKCS#11 module; the PIN from ``pin_file`` (read again at every
    login, so a changed PIN is picked up on reopening) or ``pin``, never an argument."""

    module: Path
    token_label: str
    pin_file: Path | None = None
    pin: str | None = field(default=None, repr=False)
    sessions: int = 4
    session_wait_seconds: float = 5.0
    reopen_interval_seconds: float = 1.0
    retry_after_seconds: int = 5

    def pin_reader(self) -> Callable[[], str]:
        """Reads the PIN afresh each call; :class:`HsmPinError` if there is none."""
        module, token = str(self.module), self.token_label

        def refuse(reason: str) -> HsmPinError:
            return HsmPinError(module=module, token=token, reason=reason)

        def read() -> str:
            if self.pin_file is not None:
                try:
                    with self.pin_file.open("rb") as handle:
                        raw = handle.read(MAX_PIN_FILE + 1)
                except OSError as exc:
                    raise refuse(
                        f"cannot read the PIN file {self.pin_file}: {exc.strerror}"
                    ) from None
                lines = raw[:MAX_PIN_FILE].splitlines()
                if not lines or not lines[0]:
                    raise refuse(f"the PIN file {self.pin_file} is empty")
                try:
                    return lines[0].decode()
                except UnicodeDecodeError:
                    raise refuse(f"the PIN file {self.pin_file} is not UTF-8") from None
            if self.pin:
                return self.pin
            raise refuse("no PIN configured: set CARDSVC_PKCS11_PIN_FILE or CARDSVC_PKCS11_PIN")

        return read


KeyStoreConfig = FileStoreConfig | Pkcs11Config


def open_backend(config: KeyStoreConfig) -> KeyBackend:
    """Open the configured backend; a PKCS#11 token is logged in to and checked."""
    if isinstance(config, FileStoreConfig):
        return FileKeyBackend(config.directory, config.passphrase)
    try:
        from cardsvc.keystore.pkcs11 import Pkcs11Backend
    except ModuleNotFoundError as exc:
        if exc.name != "pkcs11":
            raise
        raise ConfigurationError(
            "CARDSVC_KEY_BACKEND=pkcs11 needs python-pkcs11: pip install 'cardsvc[hsm]'"
        ) from None
    return Pkcs11Backend.open(
        module=config.module,
        token_label=config.token_label,
        pin=config.pin_reader(),
        sessions=config.sessions,
        session_wait=config.session_wait_seconds,
        reopen_interval=config.reopen_interval_seconds,
        retry_after=config.retry_after_seconds,
    )

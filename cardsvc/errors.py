"""Errors raised by the issuer (everything in ``cardsvc`` outside ``cardsvc.core``).

One root, :class:`CardsvcError`; subclasses carry data, never an HTTP status. What kind
of failure an error is comes from a kind mixed into its class (:class:`NotFound`,
:class:`Conflict`, :class:`Invalid`, ...), listed first among its bases so a subclass can
change its parent's kind; the HTTP layer (``cardsvc.api.problems``) alone maps kinds to
status codes and words, and the CLI prints ``detail`` and exits non-zero.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


class ErrorKind:
    """What kind of failure an error is (a mixin: ``class X(NotFound, RegistryError)``)."""


class NotFound(ErrorKind):
    """What the request names does not exist."""


class Conflict(ErrorKind):
    """The request is sound, but what the issuer holds now forbids it."""


class Invalid(ErrorKind):
    """The request is readable but refused: a value, a proof or a check fails."""


class Malformed(ErrorKind):
    """The request cannot be read as what it must be."""


class Unauthenticated(ErrorKind):
    """No valid credentials or proof of possession."""


class Forbidden(ErrorKind):
    """The caller is known but may not do this."""


class Throttled(ErrorKind):
    """The caller asked too often; it may retry later."""


class Unavailable(ErrorKind):
    """Something the issuer depends on does not answer; retrying may help."""


class CardsvcError(Exception):
    """Root of every error raised by the issuer (no kind: an internal failure)."""

    code: str = "cardsvc-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ScannerNotBuiltError(Unavailable, CardsvcError):
    """The scanner page's built files are missing (``node js/scan/build.mjs`` makes them)."""

    code = "scanner-not-built"

    def __init__(self, missing: str) -> None:
        super().__init__(
            f"the scanner page is not built ({missing} is missing): run `./dev run`, or "
            "`node js/verify/build.mjs && node js/scan/build.mjs`"
        )
        self.missing = missing


class ConfigurationError(CardsvcError):
    """Settings are missing or contradictory."""

    code = "configuration"


class DatabaseNotMigratedError(CardsvcError):
    """The database schema is not at the revision this code needs."""

    code = "database-not-migrated"

    def __init__(self, current: str | None, expected: str) -> None:
        super().__init__(
            f"database is at revision {current or 'none (empty)'}, this code needs {expected}: "
            "run `cardsvc db upgrade`"
        )
        self.current = current
        self.expected = expected


class KeyStoreError(CardsvcError):
    """Root of key store errors."""

    code = "key-store"


class KeyStoreNotInitialisedError(KeyStoreError):
    code = "key-store-not-initialised"

    def __init__(self, directory: Path) -> None:
        super().__init__(f"no key store in {directory}: run `cardsvc keys init`")
        self.directory = directory


class KeyStoreLockedError(KeyStoreError):
    """No passphrase is configured to decrypt private keys."""

    code = "key-store-locked"


class WrongPassphraseError(KeyStoreError):
    code = "wrong-passphrase"

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: the passphrase does not decrypt this key")
        self.path = path


class CorruptKeyStoreError(KeyStoreError):
    """A key store file is truncated, modified, replaced or not what it claims to be."""

    code = "corrupt-key-store"

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InsecurePermissionsError(KeyStoreError):
    code = "insecure-permissions"

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(
            f"{path}: mode {mode:04o} lets other users read it; run `chmod 600 {path}` "
            "(directories: 700)"
        )
        self.path = path
        self.mode = mode


class KeyNotFoundError(KeyStoreError):
    code = "key-not-found"

    def __init__(self, kid: str) -> None:
        super().__init__(f"no key with kid {kid!r}")
        self.kid = kid


class NoActiveKeyError(KeyStoreError):
    code = "no-active-key"

    def __init__(self, purpose: str, at: datetime) -> None:
        super().__init__(f"no {purpose} key may sign at {at.isoformat()}")
        self.purpose = purpose
        self.at = at


class RotationPendingError(KeyStoreError):
    code = "rotation-pending"

    def __init__(self, purpose: str, activates_at: datetime) -> None:
        super().__init__(
            f"a new {purpose} key is already published and starts signing at "
            f"{activates_at.isoformat()}; rotate again after that"
        )
        self.purpose = purpose
        self.activates_at = activates_at


class CeremonyConfigError(Invalid, KeyStoreError):
    """A key ceremony file is refused (before any key is made): ``where`` names the field."""

    code = "ceremony-config"

    def __init__(self, source: Path, where: str, reason: str) -> None:
        super().__init__(f"{source}: {where}: {reason}")
        self.source = source
        self.where = where
        self.reason = reason


class CeremonyRefusedError(Conflict, KeyStoreError):
    """A ceremony would overwrite an output or reuse a key store or key that exists."""

    code = "ceremony-refused"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}; a key ceremony makes new keys and new files only")
        self.what = what
        self.reason = reason


class OfflineRootError(Conflict, KeyStoreError):
    """The root key is offline (``CARDSVC_OFFLINE_ROOT``): this needs the offline side."""

    code = "root-offline"


class TrustListNotInstalledError(Unavailable, KeyStoreError):
    """Offline-root mode with no trust list installed yet."""

    code = "trust-list-not-installed"

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no trust list installed at {path}: sign one with the offline root and run "
            "`cardsvc keys import-trust-list FILE`"
        )
        self.path = path


class TrustListRefusedError(Invalid, KeyStoreError):
    """A trust list offered for import or signing fails ``check``."""

    code = "trust-list-refused"

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"trust list refused ({check}): {reason}")
        self.check = check
        self.reason = reason


class HsmError(KeyStoreError):
    """Root of the PKCS#11 key store's refusals to start: the token is not fit to sign.

    Raised when the issuer opens the token (start, ``cardsvc keys ...``), never quietly
    replaced by the file store. ``module`` and ``token`` name what was configured.
    """

    code = "hsm"

    def __init__(self, detail: str, *, module: str, token: str) -> None:
        super().__init__(detail)
        self.module = module
        self.token = token


class HsmModuleError(HsmError):
    """The PKCS#11 module is not configured, missing, or does not load."""

    code = "hsm-module"

    def __init__(self, *, module: str, token: str, reason: str) -> None:
        super().__init__(f"PKCS#11 module {module!r}: {reason}", module=module, token=token)
        self.reason = reason


class HsmTokenNotFoundError(HsmError):
    """No token with the configured label is present."""

    code = "hsm-token-not-found"

    def __init__(self, *, module: str, token: str, present: tuple[str, ...]) -> None:
        shown = ", ".join(repr(label) for label in present) or "none"
        super().__init__(
            f"PKCS#11 module {module!r} has no token labelled {token!r} (tokens present: {shown})",
            module=module,
            token=token,
        )
        self.present = present


class HsmPinError(HsmError):
    """No PIN is configured, or the token refuses it or is locked."""

    code = "hsm-pin"

    def __init__(self, *, module: str, token: str, reason: str) -> None:
        super().__init__(f"PKCS#11 token {token!r}: {reason}", module=module, token=token)
        self.reason = reason


class HsmKeyError(HsmError):
    """A key the store lists is missing on the token, or is not a key it may sign with.

    ``label`` is the key's label on the token, ``kid`` its thumbprint when known.
    """

    code = "hsm-key"

    def __init__(
        self, *, module: str, token: str, label: str, kid: str | None, reason: str
    ) -> None:
        named = f"key {label!r}" + (f" (kid {kid})" if kid else "")
        super().__init__(f"PKCS#11 token {token!r}, {named}: {reason}", module=module, token=token)
        self.label = label
        self.kid = kid
        self.reason = reason


class TrustListExpiredError(Unavailable, KeyStoreError):
    """Offline-root mode: the installed trust list has expired, so every verifier that
    checks its expiry refuses what this issuer signs until the next one is imported."""

    code = "trust-list-expired"

    def __init__(self, sequence: int, expires_at: datetime) -> None:
        super().__init__(
            f"trust list {sequence} expired at {expires_at.isoformat()}: prepare the next "
            "(`cardsvc keys prepare-trust-list`), sign it with the offline root and import it"
        )
        self.sequence = sequence
        self.expires_at = expires_at


class SigningUnavailableError(Unavailable, KeyStoreError):
    """The signing device does not answer now (session lost, token removed, PIN refused
    after a restart); nothing was signed, so nothing was written. ``retry_after`` is
    seconds until the next attempt to reopen it."""

    code = "signing-unavailable"

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(f"the signing device is unavailable ({reason}); retry later")
        self.reason = reason
        self.retry_after = retry_after

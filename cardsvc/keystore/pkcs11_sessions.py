"""PKCS#11 sessions: the loaded module, a pool of sessions on one token, and recovery.

The standard makes a module's state process-wide: ``C_Initialize`` once per process, and
one login shared by every session the process has on a token (closing the last session,
or ``C_Logout`` on any, logs all of them out). So:

- a loaded module is kept once per path (:func:`load_module`), like the library itself;
  reinitialising it (``C_Finalize`` + ``C_Initialize``, which SoftHSM and many HSMs need
  before they see a token that went away and came back, or a token made after start)
  waits for every operation on it, from any pool, to finish;
- a pool keeps one *login session* (opened with the PIN, never used to sign) and opens
  its signing sessions without a PIN, so returning or dropping one never logs the
  others out;
- a signing session is used by one thread at a time (sharing one across threads crashed
  SoftHSM), and the pool holds at most ``size`` of them.

Session and device failures (``CKR_SESSION_HANDLE_INVALID``, ``CKR_DEVICE_REMOVED``,
``CKR_TOKEN_NOT_PRESENT``, lost handles, ...) drop the pool's sessions and reopen them,
reinitialising the module if the failure was seen on its current initialisation; the
operation is tried once more. If the token still does not answer, or refuses the PIN,
the caller gets :class:`~cardsvc.errors.SigningUnavailableError` with a ``retry_after``
and nothing is signed. Reopening is attempted at most once per ``reopen_interval``, and
never again with a PIN the token refused (each refusal brings a PIN lockout nearer):
only a changed PIN (the PIN file is read again each time) is tried.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import pkcs11
from pkcs11 import exceptions as p11
from pkcs11._pkcs11 import lib as Pkcs11Library  # noqa: N812 - the class behind pkcs11.lib()

from cardsvc.errors import (
    HsmError,
    HsmModuleError,
    HsmPinError,
    HsmTokenNotFoundError,
    SigningUnavailableError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Failures of a session, a handle or the device: reopening may cure them.
RECOVERABLE: tuple[type[p11.PKCS11Error], ...] = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.DeviceMemory,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.GeneralError,
    p11.FunctionFailed,
    p11.NoSuchKey,
    p11.NoSuchToken,
)


def recoverable(exc: p11.PKCS11Error) -> bool:
    """Whether reopening the sessions may cure ``exc``.

    python-pkcs11 raises the bare base class for ``CKR_CRYPTOKI_NOT_INITIALIZED`` (a
    module finalised under us) and unmapped codes: those are worth a reopen too.
    """
    return isinstance(exc, RECOVERABLE) or type(exc) is p11.PKCS11Error


def describe(exc: BaseException) -> str:
    """A PKCS#11 failure in a few words (the class names the ``CKR_`` code)."""
    text = str(exc)
    return type(exc).__name__ + (f": {text}" if text else "")


class SharedLock:
    """Many holders of ``shared()`` or one of ``exclusive()``; a waiting exclusive holder
    stops new shared ones, so reinitialising is not starved by a busy pool."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


CKF_OS_LOCKING_OK = 0x02
CKR_CANT_LOCK = 0x0A


class _InitArgs(ctypes.Structure):
    _fields_: ClassVar = [
        ("create_mutex", ctypes.c_void_p),
        ("destroy_mutex", ctypes.c_void_p),
        ("lock_mutex", ctypes.c_void_p),
        ("unlock_mutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("reserved", ctypes.c_void_p),
    ]


_CkFunction = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)


class _FunctionListHead(ctypes.Structure):
    """The start of CK_FUNCTION_LIST: the version, then C_Initialize and C_Finalize."""

    _fields_: ClassVar = [
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        ("initialize", _CkFunction),
        ("finalize", _CkFunction),
    ]


class Initializer:
    """``C_Initialize`` with ``CKF_OS_LOCKING_OK``, which python-pkcs11 does not pass.

    python-pkcs11 calls ``C_Initialize(NULL)``, which tells the module that no two
    threads ever call it at once: SoftHSM then drops its locks, and signing on two
    sessions in parallel crashed the process. So once python-pkcs11 has loaded the module,
    it is finalised and initialised again here, through its own function list, asking for
    the operating system's locks. A module that cannot lock (``CKR_CANT_LOCK``) is
    initialised without, and :attr:`thread_safe` is false: its calls are then serialised.
    """

    def __init__(self, path: str) -> None:
        library = ctypes.CDLL(path)  # the handle python-pkcs11 loaded: dlopen counts it
        get_list = library.C_GetFunctionList
        get_list.restype = ctypes.c_ulong
        get_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionListHead))]
        head = ctypes.POINTER(_FunctionListHead)()
        rv = get_list(ctypes.byref(head))
        if rv:
            raise p11.PKCS11Error(f"C_GetFunctionList returned {rv:#x}")
        self._head = head.contents
        self._library = library
        self.thread_safe = False

    def finalize(self) -> None:
        self._head.finalize(None)  # CKR_CRYPTOKI_NOT_INITIALIZED is fine here

    def initialize(self) -> None:
        args = _InitArgs(flags=CKF_OS_LOCKING_OK)
        rv = self._head.initialize(ctypes.cast(ctypes.byref(args), ctypes.c_void_p))
        if rv == CKR_CANT_LOCK:
            rv = self._head.initialize(None)
            self.thread_safe = False
        else:
            self.thread_safe = True
        if rv:
            raise p11.PKCS11Error(f"C_Initialize returned {rv:#x}")


@dataclass(eq=False)
class LoadedModule:
    """One PKCS#11 library in this process; ``generation`` counts its initialisations."""

    path: str
    lib: Pkcs11Library
    initializer: Initializer
    lock: SharedLock = field(default_factory=SharedLock)
    generation: int = 0
    _serial: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def use(self) -> Iterator[None]:
        """Around every call into the module: never during a reinitialisation, and one
        at a time if the module cannot lock for itself."""
        with self.lock.shared():
            if self.initializer.thread_safe:
                yield
            else:
                with self._serial:
                    yield

    def reinitialize(self, seen: int) -> None:
        """Finalise and initialise again, unless someone did since generation ``seen``.

        Every session of every pool on this module becomes invalid; their next use fails
        as a session error and they reopen.
        """
        with self.lock.exclusive():
            if self.generation != seen:
                return
            self.generation += 1
            log.warning("reinitialising PKCS#11 module %s", self.path)
            self.initializer.finalize()
            self.initializer.initialize()


_modules: dict[str, LoadedModule] = {}
_modules_lock = threading.Lock()


def load_module(path: Path, *, token_label: str) -> LoadedModule:
    """Load (once per process) the PKCS#11 library at ``path``, initialised for threads."""
    name = str(path)
    with _modules_lock:
        loaded = _modules.get(name)
        if loaded is not None:
            return loaded
        if not path.is_file():
            raise HsmModuleError(module=name, token=token_label, reason="no such file")
        try:
            lib = pkcs11.lib(name)
            initializer = Initializer(name)
            initializer.finalize()
            initializer.initialize()
        except (OSError, RuntimeError, AttributeError) as exc:
            raise HsmModuleError(
                module=name, token=token_label, reason=f"does not load ({describe(exc)})"
            ) from None
        loaded = LoadedModule(path=name, lib=lib, initializer=initializer)
        _modules[name] = loaded
        return loaded


@dataclass(eq=False)
class PooledSession:
    """A signing session and what it found on the token (handles are per session)."""

    session: pkcs11.Session
    generation: int
    objects: dict[str, object] = field(default_factory=dict)


#: Reads the PIN afresh (from its file, or the value configured); raises HsmPinError.
PinReader = Callable[[], str]


class SessionPool:
    """Sessions on the token ``token_label`` of ``module``, at most ``size`` at a time."""

    def __init__(
        self,
        module: LoadedModule,
        *,
        token_label: str,
        pin: PinReader,
        size: int,
        wait: float,
        reopen_interval: float,
        retry_after: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self.size = size
        self._wait = wait
        self._reopen_interval = reopen_interval
        self._retry_after = retry_after
        self._clock = clock
        self._cond = threading.Condition()
        self._idle: list[PooledSession] = []
        self._open_count = 0
        self._reopen_lock = threading.Lock()
        self._token: pkcs11.Token | None = None
        self._login: pkcs11.Session | None = None
        #: Module generation the login was made on; None while not open.
        self._login_generation: int | None = None
        #: Generation on which a failure was seen (None: healthy).
        self._failed_generation: int | None = None
        self._failure = ""
        self._next_attempt = 0.0
        self._refused_pin: bytes | None = None

    # -- opening ------------------------------------------------------------------------

    def open(self) -> None:
        """Find the token and log in; typed :class:`~cardsvc.errors.HsmError` on failure.

        A token not found is looked for once more after reinitialising the module (a
        token plugged in or made after the module was loaded is seen only then).
        """
        with self._reopen_lock:
            try:
                try:
                    self._open_locked()
                except HsmTokenNotFoundError:
                    self.module.reinitialize(self.module.generation)
                    self._open_locked()
            except p11.PKCS11Error as exc:
                raise HsmError(
                    f"PKCS#11 token {self.token_label!r} cannot be opened ({describe(exc)})",
                    module=self.module.path,
                    token=self.token_label,
                ) from None

    def _open_locked(self) -> None:
        with self.module.use():
            generation = self.module.generation
            token = self._find_token()
            pin = self._pin()
            try:
                try:
                    login = token.open(user_pin=pin)
                except p11.UserAlreadyLoggedIn:
                    # Another pool of this process is logged in to the same token.
                    login = token.open()
            except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
                self._refused_pin = _digest(pin)
                raise self._pin_error("the token refused the PIN") from None
            except p11.PinLocked:
                raise self._pin_error("the user PIN is locked (the SO must reset it)") from None
            except p11.PinExpired:
                raise self._pin_error("the user PIN has expired") from None
        self._token = token
        self._login = login
        self._login_generation = generation
        self._failed_generation = None
        self._failure = ""
        self._refused_pin = None

    def _pin_error(self, reason: str) -> HsmPinError:
        return HsmPinError(module=self.module.path, token=self.token_label, reason=reason)

    def _find_token(self) -> pkcs11.Token:
        try:
            return self.module.lib.get_token(token_label=self.token_label)
        except p11.NoSuchToken:
            try:
                present = tuple(t.label for t in self.module.lib.get_tokens())
            except p11.PKCS11Error:
                present = ()
            raise HsmTokenNotFoundError(
                module=self.module.path, token=self.token_label, present=present
            ) from None
        except p11.MultipleTokensReturned:
            raise HsmTokenNotFoundError(
                module=self.module.path, token=self.token_label, present=(self.token_label,) * 2
            ) from None

    def _healthy(self) -> bool:
        return (
            self._failed_generation is None
            and self._login_generation is not None
            and self._login_generation == self.module.generation
        )

    def _unavailable(self, reason: str) -> SigningUnavailableError:
        wait = max(self._next_attempt - self._clock(), 0.0)
        return SigningUnavailableError(reason, retry_after=max(self._retry_after, math.ceil(wait)))

    def _ensure_open(self) -> None:
        """Reopen after a failure (at most once per interval); raise while impossible."""
        if self._healthy():
            return
        with self._reopen_lock:
            if self._healthy():
                return
            failed = self._failed_generation
            if failed is not None:
                now = self._clock()
                if now < self._next_attempt:
                    raise self._unavailable(self._failure)
                self._next_attempt = now + self._reopen_interval
                self._check_refused_pin()
            with self.module.use():
                self._drop_sessions()
            if failed is not None and failed == self.module.generation:
                try:
                    self.module.reinitialize(failed)
                except p11.PKCS11Error as exc:
                    self._failure = f"reinitialising the module failed ({describe(exc)})"
                    raise self._unavailable(self._failure) from None
            try:
                self._open_locked()
            except HsmError as exc:
                self._failed_generation = self.module.generation
                self._failure = exc.detail
                raise self._unavailable(exc.detail) from None
            except p11.PKCS11Error as exc:
                self._failed_generation = self.module.generation
                self._failure = f"reopening failed ({describe(exc)})"
                raise self._unavailable(self._failure) from None
            if failed is not None:
                log.warning("PKCS#11 token %r reopened", self.token_label)

    def _check_refused_pin(self) -> None:
        if self._refused_pin is None:
            return
        try:
            unchanged = _digest(self._pin()) == self._refused_pin
        except HsmPinError as exc:
            self._failure = exc.reason
            raise self._unavailable(exc.reason) from None
        if unchanged:
            self._failure = "the token refused the PIN; the same PIN is not tried again"
            raise self._unavailable(self._failure)

    def _mark_failed(self, generation: int, exc: p11.PKCS11Error) -> None:
        with self._reopen_lock:
            if self._failed_generation is None and self._login_generation == generation:
                self._failed_generation = generation
                self._failure = describe(exc)
                # The first reopen after a failure is not delayed.
                self._next_attempt = 0.0
                log.warning("PKCS#11 token %r failed: %s", self.token_label, self._failure)

    def _drop_sessions(self) -> None:
        """Forget every idle session and the login (their handles are dead, or soon)."""
        # A handle from before a reinitialisation is never closed: the number may belong
        # to another pool's session by now.
        current = self.module.generation
        with self._cond:
            dropped, self._idle = self._idle, []
            self._open_count -= len(dropped)
        for pooled in dropped:
            if pooled.generation == current:
                _close_quietly(pooled.session)
        if self._login is not None:
            login, self._login = self._login, None
            if self._login_generation == current:
                _close_quietly(login)
        self._login_generation = None

    # -- using --------------------------------------------------------------------------

    def _acquire(self, generation: int) -> PooledSession:
        deadline = self._clock() + self._wait
        with self._cond:
            while True:
                while self._idle:
                    pooled = self._idle.pop()
                    if pooled.generation == generation:
                        return pooled
                    self._open_count -= 1  # from before a reinitialisation: dead
                if self._open_count < self.size:
                    self._open_count += 1
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise SigningUnavailableError(
                        f"all {self.size} PKCS#11 sessions stayed busy for {self._wait:g} s",
                        retry_after=1,
                    )
                self._cond.wait(remaining)
        token = self._token
        try:
            if token is None:
                raise p11.SessionClosed()
            return PooledSession(session=token.open(), generation=generation)
        except BaseException:
            with self._cond:
                self._open_count -= 1
                self._cond.notify()
            raise

    def _release(self, pooled: PooledSession, *, keep: bool) -> None:
        with self._cond:
            if keep:
                self._idle.append(pooled)
            else:
                self._open_count -= 1
            self._cond.notify()
        if not keep and pooled.generation == self.module.generation:
            _close_quietly(pooled.session)

    def run(self, operation: Callable[[PooledSession], T]) -> T:
        """Run ``operation`` on a signing session, recovering once from a session error.

        Any PKCS#11 failure reaches the caller as :class:`SigningUnavailableError`; typed
        errors the operation raises pass through unchanged.
        """
        for _attempt in (1, 2):
            self._ensure_open()
            failure: p11.PKCS11Error | None = None
            with self.module.use():
                generation = self.module.generation
                if self._login_generation != generation:
                    continue  # reinitialised between the check and here: reopen
                try:
                    pooled = self._acquire(generation)
                except p11.PKCS11Error as exc:
                    failure = exc
                else:
                    try:
                        result = operation(pooled)
                    except p11.PKCS11Error as exc:
                        self._release(pooled, keep=False)
                        failure = exc
                    except BaseException:
                        self._release(pooled, keep=True)
                        raise
                    else:
                        self._release(pooled, keep=True)
                        return result
            if failure is not None:
                if not recoverable(failure):
                    raise SigningUnavailableError(
                        f"the token refused the operation ({describe(failure)})",
                        retry_after=self._retry_after,
                    )
                self._mark_failed(generation, failure)
        raise self._unavailable(self._failure or "the token does not answer")

    def run_admin(self, operation: Callable[[pkcs11.Session], T]) -> T:
        """Run ``operation`` on a fresh read-write session (key generation, metadata)."""

        def on_rw(_: PooledSession) -> T:
            token = self._token
            if token is None:
                raise p11.SessionClosed()
            session = token.open(rw=True)
            try:
                return operation(session)
            finally:
                _close_quietly(session)

        return self.run(on_rw)

    def close(self) -> None:
        """Close every session (and log out, if no other pool shares the login)."""
        with self._reopen_lock, self.module.use():
            if self._login_generation == self.module.generation:
                self._drop_sessions()
            self._login_generation = None
            self._token = None


def _digest(pin: str) -> bytes:
    return hashlib.sha256(pin.encode()).digest()


def _close_quietly(session: pkcs11.Session) -> None:
    with suppress(p11.PKCS11Error):
        session.close()

"""PC/SC access through pyscard.

This is the only module in the project that imports ``smartcard`` (pyscard). Everything
pyscard returns or raises is turned into :mod:`reader_agent.errors` here, so the layers above
never see a pyscard type or a raw PC/SC result code.

Each public call, and each :class:`PcscConnection`, opens its own PC/SC context and releases
it when done. That costs one round trip to pcscd, and it means a restarted pcscd never leaves
the agent holding a stale context (a known pcsc-lite trouble spot): the operation in flight
fails with a clear typed error, and the next :func:`connect` works once pcscd is back.

:class:`PcscConnection` is the ``CardConnection`` the APDU layer runs over: one card, held in
a PC/SC transaction (exclusive access) for its lifetime, with every call on one dedicated
worker thread (pyscard card handles are not thread-safe) under a deadline. After any failure
the connection is dead and says so; the caller connects again.

APDU traffic is logged at :data:`reader_agent.apdu.TRAFFIC` (below DEBUG) with the data of
PIN-carrying commands redacted.

Each public call also takes a ``timeout`` and runs its PC/SC calls on a worker thread. pcsc-lite
has no deadline of its own for a hung pcscd or ``SCardConnect``, and vpcd has none for a
stalled card emulator. If a call runs past the deadline, it is abandoned (C code can't be
interrupted) and :class:`~reader_agent.errors.ReaderTimeoutError` is raised. pyscard
releases the GIL while it waits, so the caller's thread keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from smartcard import scard

from reader_agent.apdu import TRAFFIC, redact
from reader_agent.errors import (
    AgentError,
    NoCardError,
    NoReadersError,
    PcscCode,
    ReaderError,
    ReaderTimeoutError,
    ServiceUnavailableError,
    as_pcsc_code,
    describe_pcsc_code,
)

__all__ = [
    "PcscConnection",
    "ReaderState",
    "card_atr",
    "connect",
    "list_readers",
    "transmit",
    "wait_for_card",
    "wait_for_removal",
    "watch_readers",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

_SERVICE_DOWN = frozenset({PcscCode.E_NO_SERVICE, PcscCode.E_SERVICE_STOPPED})
_NO_CARD = frozenset({PcscCode.E_NO_SMARTCARD, PcscCode.W_REMOVED_CARD})
# How long one SCardGetStatusChange may block while waiting for a card: short, so the
# overall deadline is checked often and a restarted pcscd is noticed quickly.
_STATUS_POLL_MS = 500
# A card that leaves mid-command can cut its answer short (vpcd answers nothing at all)
# before pcscd notices: pcsc-lite polls most readers every 400 ms. So after an answer
# without a status word, the card handle's state is watched this long for the removal.
_REMOVAL_SETTLE = 1.0
_REMOVAL_POLL = 0.05
# A card that lost power mid-command (reset) is as gone for the step in flight as a removed
# one: with our exclusive transaction held, nobody else could have reset it.
_CARD_GONE = frozenset({PcscCode.W_REMOVED_CARD, PcscCode.E_NO_SMARTCARD, PcscCode.W_RESET_CARD})


def list_readers(*, timeout: float) -> list[str]:
    """Return the names of the readers pcscd knows, in pcscd's order.

    An empty list means pcscd runs but has no reader. That's a normal state to poll, so it
    isn't an error.

    Raises:
        ServiceUnavailableError: pcscd is not running.
        ReaderTimeoutError: pcscd didn't answer within ``timeout`` seconds.
        ReaderError: any other PC/SC failure, with its result code.
    """

    def work() -> list[str]:
        with _context() as hcontext:
            hresult, readers = scard.SCardListReaders(hcontext, [])
            if as_pcsc_code(hresult) == PcscCode.E_NO_READERS_AVAILABLE:
                return []
            _check(hresult, "SCardListReaders")
            return [str(name) for name in readers]

    return _run_with_deadline(work, timeout=timeout, operation="list readers")


def card_atr(reader: str, *, timeout: float) -> bytes:
    """Return the ATR of the card in ``reader``, without connecting to the card.

    This reads the reader state that pcscd keeps (``SCardGetStatusChange``). The check
    doesn't power the card or take it away from another application.

    Raises:
        NoCardError: the reader is empty.
        ServiceUnavailableError, ReaderTimeoutError, ReaderError: as for :func:`list_readers`
            (an unknown reader name is a ``ReaderError`` with ``SCARD_E_UNKNOWN_READER``).
    """

    def work() -> bytes:
        with _context() as hcontext:
            hresult, states = scard.SCardGetStatusChange(
                hcontext, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            _check(hresult, "SCardGetStatusChange", reader=reader)
            _name, event_state, atr = states[0]
            # pcsc-lite fails with SCARD_E_UNKNOWN_READER above; WinSCard reports success and
            # flags the reader state instead.
            if event_state & scard.SCARD_STATE_UNKNOWN:
                raise ReaderError(
                    f"pcscd has no reader named {reader!r}",
                    operation="SCardGetStatusChange",
                    pcsc_code=PcscCode.E_UNKNOWN_READER,
                    reader=reader,
                )
            if not event_state & scard.SCARD_STATE_PRESENT:
                raise NoCardError(
                    f"no card in reader {reader!r}",
                    operation="SCardGetStatusChange",
                    reader=reader,
                )
            return bytes(atr)

    return _run_with_deadline(work, timeout=timeout, operation="read ATR", reader=reader)


def transmit(reader: str, apdu: bytes, *, timeout: float) -> tuple[bytes, int]:
    """Send one command APDU to the card in ``reader``. Return ``(response data, status word)``.

    This is a one-shot exchange. It connects in shared mode (T=0 or T=1), transmits,
    and disconnects without resetting the card. The APDU is passed through unchanged: no
    GET RESPONSE on 61xx or resend on 6Cxx. The APDU layer above does that. Command and
    response bytes aren't logged, because they may carry PINs or keys.

    Raises:
        NoCardError: the reader is empty or the card was removed mid-exchange.
        ServiceUnavailableError, ReaderTimeoutError, ReaderError: as for :func:`list_readers`.
    """

    def work() -> tuple[bytes, int]:
        with _context() as hcontext, _card(hcontext, reader) as (hcard, protocol):
            hresult, response = scard.SCardTransmit(hcard, protocol, list(apdu))
            _check(hresult, "SCardTransmit", reader=reader)
            if len(response) < 2:
                raise _no_status_word(hcard, len(response), reader, settle=timeout / 2)
            data = bytes(response[:-2])
            return data, (response[-2] << 8) | response[-1]

    return _run_with_deadline(work, timeout=timeout, operation="transmit", reader=reader)


@contextmanager
def _context() -> Iterator[int]:
    """Establish a PC/SC context and release it on exit."""
    hresult, hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(hresult, "SCardEstablishContext")
    try:
        yield hcontext
    finally:
        hresult = scard.SCardReleaseContext(hcontext)
        if hresult != scard.SCARD_S_SUCCESS:
            # Nothing to recover: pcscd drops the context when this client goes away.
            _log.debug("SCardReleaseContext: %s", describe_pcsc_code(hresult))


@contextmanager
def _card(hcontext: int, reader: str) -> Iterator[tuple[int, int]]:
    """Connect in shared mode to the card in ``reader``. Yield ``(card handle, protocol)``."""
    hresult, hcard, protocol = scard.SCardConnect(
        hcontext,
        reader,
        scard.SCARD_SHARE_SHARED,
        scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
    )
    _check(hresult, "SCardConnect", reader=reader)
    try:
        yield hcard, protocol
    finally:
        hresult = scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        if hresult != scard.SCARD_S_SUCCESS:
            # Disconnecting from a removed card fails. The exchange's result still stands.
            _log.debug("SCardDisconnect on %r: %s", reader, describe_pcsc_code(hresult))


def _no_status_word(hcard: int, length: int, reader: str, *, settle: float) -> ReaderError:
    """The error for an answer of ``length`` (< 2) bytes: too short for a status word.

    If the card handle turns out removed (or reset) within ``settle`` seconds (at most
    :data:`_REMOVAL_SETTLE`), the card left mid-command: :class:`NoCardError`. A card still
    there sent a garbled answer: :class:`ReaderError`.
    """
    deadline = time.monotonic() + min(settle, _REMOVAL_SETTLE)
    while True:
        hresult, _name, _state, _protocol, _atr = scard.SCardStatus(hcard)
        code = as_pcsc_code(hresult)
        if code in _CARD_GONE:
            return NoCardError(
                f"the card left reader {reader!r} during a command (answer cut to "
                f"{length} byte(s)) [{describe_pcsc_code(code)}]",
                operation="SCardTransmit",
                pcsc_code=code,
                reader=reader,
            )
        if code != PcscCode.SUCCESS or time.monotonic() >= deadline:
            return ReaderError(
                f"response of {length} byte(s) from the card in {reader!r} has no status word",
                operation="SCardTransmit",
                reader=reader,
            )
        time.sleep(_REMOVAL_POLL)


def _check(hresult: int, operation: str, *, reader: str | None = None) -> None:
    """Raise the typed error for ``hresult`` unless it reports success."""
    code = as_pcsc_code(hresult)
    if code == PcscCode.SUCCESS:
        return
    where = f" on reader {reader!r}" if reader is not None else ""
    detail = (
        f"{operation}{where} failed: {scard.SCardGetErrorMessage(hresult)} "
        f"[{describe_pcsc_code(code)}]"
    )
    error_type: type[ReaderError] = ReaderError
    if code in _SERVICE_DOWN:
        error_type = ServiceUnavailableError
        detail += (
            ". pcscd is not running: start it (in a container `pcscd --foreground`, "
            "with systemd `systemctl start pcscd.socket`)"
        )
    elif code == PcscCode.E_NO_READERS_AVAILABLE:
        error_type = NoReadersError
    elif code in _NO_CARD:
        error_type = NoCardError
    raise error_type(detail, operation=operation, pcsc_code=code, reader=reader)


def _run_with_deadline(
    work: Callable[[], _T], *, timeout: float, operation: str, reader: str | None = None
) -> _T:
    """Run ``work`` on a worker thread. Return its result or raise its error.

    Raise :class:`ReaderTimeoutError` if ``work`` is still running after ``timeout`` seconds.
    The thread is a daemon thread, so an abandoned call can't keep the process from exiting.
    Exceptions other than our own come from pyscard (SWIG type errors, ``scard.error``). They
    are wrapped in :class:`ReaderError`, so callers only ever see agent errors.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    result: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the calling thread below
            failure.append(exc)

    worker = threading.Thread(target=target, name=f"pcsc {operation}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        where = f" on reader {reader!r}" if reader is not None else ""
        raise ReaderTimeoutError(
            f"{operation}{where} did not finish within {timeout:g} s (pcscd or the card hangs)",
            operation=operation,
            timeout=timeout,
            reader=reader,
        )
    if failure:
        exc = failure[0]
        if isinstance(exc, AgentError) or not isinstance(exc, Exception):
            raise exc
        raise ReaderError(
            f"pyscard failed during {operation}: {exc!r}", operation=operation, reader=reader
        ) from exc
    return result[0]


def wait_for_card(reader: str, *, timeout: float) -> bytes:
    """Block until a card is present in ``reader``; return its ATR.

    Returns at once if a card is already there. Raises :class:`ReaderTimeoutError` if none
    arrives within ``timeout`` seconds, and the errors of :func:`card_atr` otherwise.
    """
    return _wait_for_state(reader, present=True, timeout=timeout)


def wait_for_removal(reader: str, *, timeout: float) -> None:
    """Block until ``reader`` is empty (the card was taken out)."""
    _wait_for_state(reader, present=False, timeout=timeout)


def _wait_for_state(reader: str, *, present: bool, timeout: float) -> bytes:
    what = "card insertion" if present else "card removal"
    deadline = time.monotonic() + timeout

    def work() -> bytes:
        with _context() as hcontext:
            known = scard.SCARD_STATE_UNAWARE
            while True:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    raise ReaderTimeoutError(
                        f"no {what} in reader {reader!r} within {timeout:g} s",
                        operation=what,
                        timeout=timeout,
                        reader=reader,
                    )
                hresult, states = scard.SCardGetStatusChange(
                    hcontext, min(remaining_ms, _STATUS_POLL_MS), [(reader, known)]
                )
                if as_pcsc_code(hresult) == PcscCode.E_TIMEOUT:
                    continue
                _check(hresult, "SCardGetStatusChange", reader=reader)
                _name, event_state, atr = states[0]
                if event_state & scard.SCARD_STATE_UNKNOWN:
                    raise ReaderError(
                        f"reader {reader!r} is gone",
                        operation="SCardGetStatusChange",
                        pcsc_code=PcscCode.E_UNKNOWN_READER,
                        reader=reader,
                    )
                if bool(event_state & scard.SCARD_STATE_PRESENT) == present:
                    return bytes(atr)
                known = event_state & ~scard.SCARD_STATE_CHANGED

    # The worker enforces the deadline itself between polls; the outer deadline only
    # catches a pcscd that stops answering altogether.
    return _run_with_deadline(work, timeout=timeout + 2.0, operation=what, reader=reader)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReaderState:
    """One reader as pcscd last reported it."""

    name: str
    present: bool
    atr: bytes
    #: pcscd's event state word (CHANGED cleared): handed back to :func:`watch_readers` as
    #: what the caller knows, so the next call blocks until something differs.
    event: int


def watch_readers(
    previous: Sequence[ReaderState], *, wait: float, timeout: float = 5.0
) -> tuple[ReaderState, ...]:
    """The readers and their cards, as soon as any differs from ``previous``.

    Blocks up to ``wait`` seconds in ``SCardGetStatusChange`` and returns at once on a
    change, so a watcher calling it in a loop sees an insertion or a removal within pcscd's
    own polling delay; after ``wait`` seconds without change it returns ``previous`` for the
    readers still there. A reader that appeared is reported at once (nothing known of it),
    one that went away is simply missing. ``timeout`` bounds the call beyond ``wait`` (a
    hung pcscd). Raises ServiceUnavailableError, ReaderTimeoutError or ReaderError.
    """
    if not wait > 0:
        raise ValueError(f"wait must be positive, got {wait!r}")
    known = {state.name: state for state in previous}

    def work() -> tuple[ReaderState, ...]:
        with _context() as hcontext:
            hresult, listed = scard.SCardListReaders(hcontext, [])
            if as_pcsc_code(hresult) == PcscCode.E_NO_READERS_AVAILABLE:
                return ()
            _check(hresult, "SCardListReaders")
            names = [str(name) for name in listed]
            if not names:
                return ()
            current = [
                (name, known[name].event if name in known else scard.SCARD_STATE_UNAWARE)
                for name in names
            ]
            # A reader we know nothing of, or one that went away: answer now, not after
            # ``wait`` (pcscd returns at once for an UNAWARE reader anyway).
            changed_list = any(n not in known for n in names) or len(known) != len(names)
            wait_ms = 0 if changed_list else int(wait * 1000)
            hresult, states = scard.SCardGetStatusChange(hcontext, wait_ms, current)
            if as_pcsc_code(hresult) == PcscCode.E_TIMEOUT:
                return tuple(known[name] for name in names)
            _check(hresult, "SCardGetStatusChange")
            out: list[ReaderState] = []
            for name, event_state, atr in states:
                present = bool(event_state & scard.SCARD_STATE_PRESENT) and not bool(
                    event_state & scard.SCARD_STATE_UNKNOWN
                )
                out.append(
                    ReaderState(
                        name=str(name),
                        present=present,
                        atr=bytes(atr) if present else b"",
                        event=event_state & ~scard.SCARD_STATE_CHANGED,
                    )
                )
            return tuple(out)

    return _run_with_deadline(work, timeout=wait + timeout, operation="watch readers")


class _Worker:
    """One daemon thread that runs a connection's PC/SC calls in order, each with a deadline.

    A daemon thread (not a ThreadPoolExecutor, whose workers are joined at exit) so that a
    call abandoned on a hung card never keeps the process alive.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, future = job
            try:
                future.set_result(work())
            except BaseException as exc:  # handed to the caller through the future
                future.set_exception(exc)

    def submit(self, work: Callable[[], object]) -> Future[object]:
        future: Future[object] = Future()
        self._jobs.put((work, future))
        return future

    def stop(self) -> None:
        """Let the thread exit after whatever it is still doing (possibly a hung call)."""
        self._jobs.put(None)


class PcscConnection:
    """An exclusive connection to the card in ``reader`` (a ``CardConnection``).

    Open it with :func:`connect`. Every call has the connection's ``timeout``. Holds a
    PC/SC transaction from connect to close, so no other application can interleave APDUs
    (or see the PIN verified state); :meth:`close` resets the card for the same reason.
    """

    def __init__(self, reader: str, *, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.reader = reader
        self.timeout = timeout
        self.protocol = ""
        self.atr = b""
        self._hcontext: int | None = None
        self._hcard: int | None = None
        self._pci = 0
        self._dead: ReaderError | None = None
        self._closed = False
        self._worker = _Worker(f"pcsc {reader}")

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        def work() -> None:
            hresult, hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            _check(hresult, "SCardEstablishContext")
            self._hcontext = hcontext
            hresult, hcard, protocol = scard.SCardConnect(
                hcontext,
                self.reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            _check(hresult, "SCardConnect", reader=self.reader)
            self._hcard = hcard
            self._pci = protocol
            self.protocol = "T=0" if protocol == scard.SCARD_PROTOCOL_T0 else "T=1"
            hresult = scard.SCardBeginTransaction(hcard)
            _check(hresult, "SCardBeginTransaction", reader=self.reader)
            hresult, _reader, _state, _protocol, atr = scard.SCardStatus(hcard)
            _check(hresult, "SCardStatus", reader=self.reader)
            self.atr = bytes(atr)

        try:
            self._call(work, "connect")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the transaction, reset the card (drops PIN state), release the context.

        Safe to call twice, and after a failure. Cleanup runs on the worker and is awaited
        for up to the deadline, so the next connection finds the card released; if a call
        hung, cleanup runs when (if ever) that call returns, without blocking the caller.
        """
        if self._closed:
            return
        self._closed = True
        hung = isinstance(self._dead, ReaderTimeoutError)
        if self._dead is None:
            self._dead = ReaderError(
                f"connection to {self.reader!r} is closed",
                operation="transmit",
                reader=self.reader,
            )

        def cleanup() -> None:
            hcard, hcontext = self._hcard, self._hcontext
            self._hcard = self._hcontext = None
            if hcard is not None:
                scard.SCardEndTransaction(hcard, scard.SCARD_LEAVE_CARD)
                hresult = scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD)
                if hresult != scard.SCARD_S_SUCCESS:
                    _log.debug("SCardDisconnect: %s", describe_pcsc_code(hresult))
            if hcontext is not None:
                scard.SCardReleaseContext(hcontext)

        done = self._worker.submit(cleanup)
        self._worker.stop()
        if not hung:
            with contextlib.suppress(Exception):
                done.result(self.timeout)

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- CardConnection -------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU, return ``(data, status word)``; no 61xx/6Cxx handling here.

        Raises NoCardError (card pulled), ServiceUnavailableError (pcscd gone),
        ReaderTimeoutError (no answer within the deadline) or ReaderError; after any of
        them the connection is dead: connect again.
        """
        if _log.isEnabledFor(TRAFFIC):
            _log.log(TRAFFIC, "%s -> %s", self.reader, redact(apdu))

        def work() -> tuple[bytes, int]:
            hcard = self._hcard
            if hcard is None:  # closed by a failure queued ahead of this call
                raise ReaderError(
                    f"connection to {self.reader!r} is closed",
                    operation="transmit",
                    reader=self.reader,
                )
            hresult, response = scard.SCardTransmit(hcard, self._pci, list(apdu))
            if as_pcsc_code(hresult) == PcscCode.E_NOT_TRANSACTED:
                # A card that left mid-command can fail the exchange before pcscd marks
                # the handle removed: look again, as for an answer cut short.
                gone = _no_status_word(hcard, 0, self.reader, settle=self.timeout / 2)
                if isinstance(gone, NoCardError):
                    raise gone
            _check(hresult, "SCardTransmit", reader=self.reader)
            if len(response) < 2:
                raise _no_status_word(hcard, len(response), self.reader, settle=self.timeout / 2)
            return bytes(response[:-2]), (response[-2] << 8) | response[-1]

        data, sw = self._call(work, "transmit")
        if _log.isEnabledFor(TRAFFIC):
            _log.log(TRAFFIC, "%s <- %s %04X", self.reader, data.hex(), sw)
        return data, sw

    def _call(self, work: Callable[[], _T], operation: str) -> _T:
        if self._dead is not None:
            raise self._dead
        future = self._worker.submit(work)
        try:
            result = future.result(self.timeout)
        except FutureTimeoutError:
            error: ReaderError = ReaderTimeoutError(
                f"{operation} on reader {self.reader!r} did not finish within "
                f"{self.timeout:g} s (the card or pcscd hangs)",
                operation=operation,
                timeout=self.timeout,
                reader=self.reader,
            )
            self._fail(error)
            raise error from None
        except AgentError as exc:
            if isinstance(exc, ReaderError):
                self._fail(exc)
            raise
        except Exception as exc:
            error = ReaderError(
                f"pyscard failed during {operation}: {exc!r}",
                operation=operation,
                reader=self.reader,
            )
            self._fail(error)
            raise error from exc
        return result  # type: ignore[return-value]

    def _fail(self, error: ReaderError) -> None:
        """A failed call leaves the card in an unknown state: this connection is over."""
        self._dead = error
        self.close()


def connect(reader: str, *, timeout: float) -> PcscConnection:
    """Connect (T=0 or T=1) to the card in ``reader`` and begin an exclusive transaction.

    ``timeout`` bounds every later call on the connection too. Raises NoCardError,
    ServiceUnavailableError, ReaderTimeoutError or ReaderError.
    """
    connection = PcscConnection(reader, timeout=timeout)
    connection._open()
    return connection

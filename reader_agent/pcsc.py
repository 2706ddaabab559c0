"""PC/SC access through pyscard.

This is the only module in the project that imports ``smartcard`` (pyscard). Everything
pyscard returns or raises is turned into :mod:`reader_agent.errors` here, so the layers above
never see a pyscard type or a raw PC/SC result code.

Each public call opens its own PC/SC context and releases it when done. That costs one round
trip to pcscd, and it means a restarted pcscd never leaves the agent holding a stale context
(a known pcsc-lite trouble spot).

Each public call also takes a ``timeout`` and runs its PC/SC calls on a worker thread. pcsc-lite
has no deadline of its own for a hung pcscd or ``SCardConnect``, and vpcd has none for a
stalled card emulator. If a call runs past the deadline, it is abandoned (C code can't be
interrupted) and :class:`~reader_agent.errors.ReaderTimeoutError` is raised. pyscard
releases the GIL while it waits, so the caller's thread keeps running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from smartcard import scard

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

__all__ = ["card_atr", "list_readers", "transmit"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

_SERVICE_DOWN = frozenset({PcscCode.E_NO_SERVICE, PcscCode.E_SERVICE_STOPPED})
_NO_CARD = frozenset({PcscCode.E_NO_SMARTCARD, PcscCode.W_REMOVED_CARD})


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
                raise ReaderError(
                    f"response of {len(response)} byte(s) from the card in {reader!r} has no "
                    "status word",
                    operation="SCardTransmit",
                    reader=reader,
                )
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

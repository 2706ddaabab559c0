"""The vpcd side of the emulator: connects to pcscd's vpcd driver and serves the applet.

vpcd listens on TCP 35963 + slot. Every message is a 2-byte big-endian length then the
payload; a 1-byte payload is a control (0 power off, 1 power on, 2 reset, 4 get ATR, only
the last one answered), anything longer is a command APDU answered by a response APDU.
Closing the socket is the card leaving the reader, so the emulator reconnects after a
drop or when pcscd restarts: the card is "inserted" again.

Faults for tests (:class:`Faults`): a delay before every answer, dropping the connection
mid-command after N APDUs or after N READ BINARY (once), a one-byte answer without status
word after N READ BINARY (once), and hanging after N APDUs until released.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Final

from reader_agent.apdu import TRAFFIC, redact
from reader_agent.card.constants import ATR, Ins
from reader_agent.emulator.applet import Applet

_log = logging.getLogger(__name__)

VPCD_BASE_PORT: Final = 35963
_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0, 1, 2, 4
_POLL: Final = 0.2  # seconds: how often a blocked read looks at the stop flag


@dataclass(frozen=True, kw_only=True)
class Faults:
    """Faults to inject. Counts are of command APDUs since the emulator started."""

    delay_ms: int = 0
    #: Close the socket, unanswered, when APDU number ``drop_after + 1`` arrives (once).
    drop_after: int | None = None
    #: Close the socket, unanswered, at the first APDU after READ BINARY number
    #: ``drop_after_reads`` was answered (once): a card pulled between two reads of a
    #: document, whatever else the reads took (GET RESPONSE, 6Cxx resends).
    drop_after_reads: int | None = None
    #: Answer the first APDU after READ BINARY number ``truncate_after_reads`` with its
    #: first byte only, and stay in the reader (once): a garbled answer, no removal.
    truncate_after_reads: int | None = None
    #: Stop answering from APDU number ``hang_after + 1`` until :meth:`VpcdCard.release`.
    hang_after: int | None = None


class VpcdCard:
    """The emulated card in one vpcd slot, served on a background thread (or in the
    foreground with :meth:`serve_forever`)."""

    def __init__(
        self,
        applet: Applet,
        *,
        slot: int = 0,
        host: str = "127.0.0.1",
        port: int | None = None,
        faults: Faults | None = None,
        reinsert_delay: float = 1.0,
    ) -> None:
        self.applet = applet
        self.address = (host, VPCD_BASE_PORT + slot if port is None else port)
        self.faults = faults or Faults()
        # vpcd must see the old connection gone at a presence poll before it takes a new
        # one: reconnecting within a few hundred ms leaves the new socket unserved (seen
        # here with vpcd 0.9). One second is comfortably past pcscd's poll interval.
        self.reinsert_delay = reinsert_delay
        self.apdu_count = 0
        self.read_count = 0
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._release = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> VpcdCard:
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._run, name="vpcd-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (or Ctrl-C in the CLI)."""
        self._run()

    def stop(self) -> None:
        """Remove the card for good: stop serving and close the socket."""
        self._stop.set()
        self._release.set()
        self._close()
        if self._thread is not None:
            self._thread.join(5.0)

    def remove(self) -> None:
        """Pull the card: close the socket now; it is reinserted after ``reinsert_delay``."""
        self._close()

    def release(self) -> None:
        """End a hang: the hung command is never answered; the card is pulled and reinserted
        (what a clerk does with a card that stopped responding)."""
        self.faults = Faults(delay_ms=self.faults.delay_ms)
        self._release.set()

    # -- serving --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    sock = socket.create_connection(self.address, timeout=2.0)
                except OSError:
                    # pcscd not (yet) listening, e.g. while it restarts: retry.
                    self._stop.wait(_POLL)
                    continue
                sock.settimeout(_POLL)
                # vpcd writes the 2-byte length and the payload separately; with Nagle on
                # its side and delayed ACKs on ours every APDU would wait ~40 ms.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sock = sock
                self.connected.set()
                try:
                    self._serve(sock)
                finally:
                    self.connected.clear()
                    self._close()
                if not self._stop.is_set():
                    self._stop.wait(self.reinsert_delay)
        except BaseException as exc:  # surfaced to tests through self.error
            self.error = exc
            _log.exception("vpcd emulator failed")

    def _serve(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            header = self._recv_exact(sock, 2)
            if header is None:
                return
            payload = self._recv_exact(sock, int.from_bytes(header, "big"))
            if payload is None:
                return
            if len(payload) == 1:
                reply = self._control(payload[0])
            else:
                reply = self._command(payload)
                if reply is None:
                    return  # fault: connection dropped mid-command
            if reply is not None:
                sock.sendall(len(reply).to_bytes(2, "big") + reply)

    def _control(self, code: int) -> bytes | None:
        if code in (_POWER_ON, _RESET):
            self.applet.power_on()
        elif code == _POWER_OFF:
            self.applet.power_on()  # volatile state is lost either way
        elif code == _GET_ATR:
            return ATR
        return None

    def _command(self, apdu: bytes) -> bytes | None:
        self.apdu_count += 1
        faults = self.faults
        _log.log(TRAFFIC, "emulator <- %s", redact(apdu))
        if (faults.drop_after is not None and self.apdu_count > faults.drop_after) or (
            faults.drop_after_reads is not None and self.read_count >= faults.drop_after_reads
        ):
            self.faults = replace(faults, drop_after=None, drop_after_reads=None)
            _log.info("fault: dropping the connection at APDU %d", self.apdu_count)
            return None
        if faults.truncate_after_reads is not None and (
            self.read_count >= faults.truncate_after_reads
        ):
            self.faults = replace(faults, truncate_after_reads=None)
            _log.info("fault: truncating the answer to APDU %d", self.apdu_count)
            return self.applet.process(apdu)[:1]
        if faults.hang_after is not None and self.apdu_count > faults.hang_after:
            _log.info("fault: hanging at APDU %d", self.apdu_count)
            self._release.clear()
            while not self._release.wait(_POLL):
                pass
            return None
        if faults.delay_ms:
            time.sleep(faults.delay_ms / 1000)
        response = self.applet.process(apdu)
        if len(apdu) > 1 and apdu[1] == Ins.READ_BINARY:
            self.read_count += 1
        _log.log(TRAFFIC, "emulator -> %s", response.hex())
        return response

    def _recv_exact(self, sock: socket.socket, size: int) -> bytes | None:
        """Exactly ``size`` bytes (TCP may split any message); None on EOF or stop."""
        buffer = bytearray()
        while len(buffer) < size:
            if self._stop.is_set():
                return None
            try:
                _quickack(sock)
                chunk = sock.recv(size - len(buffer))
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buffer += chunk
        return bytes(buffer)

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _quickack(sock: socket.socket) -> None:
    """Acknowledge at once (Linux re-arms delayed ACKs after every read)."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)

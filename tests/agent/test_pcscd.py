"""reader_agent.pcsc against a real pcscd with the vpcd driver, plus its error mapping.

Tests marked ``pcscd`` get a running pcscd from tests/agent/conftest.py. They use a tiny
vpcd card emulator defined here: a thread that connects to vpcd's TCP port and answers the
vpcd protocol. With it, a card sits in "Virtual PCD 00 00", and an APDU goes through pyscard,
pcscd and vpcd and comes back.

reader_agent.pcsc is imported inside the tests, not at module level: without pyscard the
import fails, and the fixtures turn that into a skip (or a failure under CI=true) instead of
a collection error.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reader_agent import errors

# The readers the vpcd config in /etc/reader.conf.d/ gives: slots 0 and 1.
SLOT0, SLOT1 = "Virtual PCD 00 00", "Virtual PCD 00 01"
VPCD_HOST = "127.0.0.1"
VPCD_PORT_SLOT0 = 35963

# TS=3B, T0=80 (TD1 follows, no historical bytes), TD1=80 (T=0, TD2 follows), TD2=01 (T=1),
# TCK=01.
ATR = bytes.fromhex("3B80800101")

# Tests that fake pyscard patch the functions reader_agent.pcsc calls, by dotted path.
_SCARD = "reader_agent.pcsc.scard."

_VPCD_POWER_OFF, _VPCD_POWER_ON, _VPCD_RESET, _VPCD_GET_ATR = 0, 1, 2, 4


class VirtualCard:
    """A minimal vpcd card emulator on a thread: answers the ATR and echoes APDUs + 9000.

    vpcd framing: a 2-byte big-endian length, then the payload. A 1-byte payload is a control
    message (0 power off, 1 power on, 2 reset: no reply; 4 get ATR: reply with the ATR).
    Anything longer is a command APDU, answered with a response APDU. When the socket closes,
    vpcd reports the card as removed.
    """

    def __init__(self, port: int, *, atr: bytes = ATR) -> None:
        self.atr = atr
        self.controls: list[int] = []
        self.commands: list[bytes] = []
        self.error: BaseException | None = None
        # vpcd only accepts on its next presence poll, but the kernel completes the TCP
        # handshake right away. The timeout bounds the connect to a port nobody listens on.
        self._sock = socket.create_connection((VPCD_HOST, port), timeout=5.0)
        # Short reads let the thread notice close() without waiting for pcscd's next poll.
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="vpcd card", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Remove the card: stop the thread and close the socket (vpcd sees EOF)."""
        self._stop.set()
        self._thread.join(5.0)
        with contextlib.suppress(OSError):
            self._sock.close()
        assert not self._thread.is_alive(), "vpcd card thread did not stop"

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                header = self._recv_exact(2)
                if header is None:
                    return
                payload = self._recv_exact(int.from_bytes(header, "big"))
                if payload is None:
                    return
                reply = self._answer(payload)
                if reply is not None:
                    self._sock.sendall(len(reply).to_bytes(2, "big") + reply)
        except BaseException as exc:  # reported to the test through self.error
            self.error = exc

    def _answer(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            self.controls.append(payload[0])
            # Power off, power on and reset get no reply. Unknown controls are recorded and
            # ignored too.
            return self.atr if payload[0] == _VPCD_GET_ATR else None
        self.commands.append(payload)
        return payload + b"\x90\x00"

    def _recv_exact(self, size: int) -> bytes | None:
        """Read exactly ``size`` bytes; None on EOF or close(). TCP may split any message."""
        buffer = bytearray()
        while len(buffer) < size:
            if self._stop.is_set():
                return None
            try:
                chunk = self._sock.recv(size - len(buffer))
            except TimeoutError:
                continue
            if not chunk:
                return None
            buffer += chunk
        return bytes(buffer)


def wait_until(check: Callable[[], object], *, timeout: float, what: str) -> object:
    """Call ``check`` until it returns without raising an AgentError. Bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except errors.AgentError as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} not reached within {timeout:g} s: {exc}") from exc
        time.sleep(0.1)


def expect_no_card(reader: str) -> None:
    """Return if ``reader`` is empty, else raise an AgentError (for :func:`wait_until`)."""
    from reader_agent import pcsc

    try:
        atr = pcsc.card_atr(reader, timeout=5.0)
    except errors.NoCardError:
        return
    raise errors.AgentError(f"{reader!r} still has a card (ATR {atr.hex()})")


@pytest.mark.pcscd
def test_pcscd_lists_exactly_the_two_virtual_readers() -> None:
    from reader_agent import pcsc

    assert sorted(pcsc.list_readers(timeout=5.0)) == [SLOT0, SLOT1]


@pytest.mark.pcscd
def test_apdu_round_trips_through_pcscd_and_vpcd() -> None:
    from reader_agent import pcsc

    # Empty before the card connects. A card from an earlier test may take a presence poll
    # to disappear.
    wait_until(lambda: expect_no_card(SLOT0), timeout=10.0, what="empty slot 0")
    with pytest.raises(errors.NoCardError) as no_card:
        pcsc.transmit(SLOT0, bytes.fromhex("00A4040000"), timeout=5.0)
    assert no_card.value.reader == SLOT0

    card = VirtualCard(VPCD_PORT_SLOT0)
    try:
        atr = wait_until(
            lambda: pcsc.card_atr(SLOT0, timeout=5.0), timeout=10.0, what="card in slot 0"
        )
        assert atr == ATR

        apdu = bytes.fromhex("00A4040007A000000003101000")  # SELECT by AID, Le=00
        data, sw = pcsc.transmit(SLOT0, apdu, timeout=5.0)
        assert (data, sw) == (apdu, 0x9000)
        # vpcd and pcscd pass the APDU through unchanged.
        assert card.commands == [apdu]
        assert _VPCD_POWER_ON in card.controls
        assert _VPCD_GET_ATR in card.controls
        # Slot 1 has no emulator, so it stays empty.
        with pytest.raises(errors.NoCardError):
            pcsc.card_atr(SLOT1, timeout=5.0)
    finally:
        card.close()
    assert card.error is None, f"vpcd card thread failed: {card.error!r}"

    # Closing the socket removes the card.
    wait_until(lambda: expect_no_card(SLOT0), timeout=10.0, what="card removal")


@pytest.mark.pcscd
def test_unknown_reader_is_a_reader_error_with_its_code() -> None:
    from reader_agent import pcsc

    with pytest.raises(errors.ReaderError) as raised:
        pcsc.card_atr("No Such Reader 00 00", timeout=5.0)
    assert raised.value.pcsc_code == errors.PcscCode.E_UNKNOWN_READER
    assert raised.value.reader == "No Such Reader 00 00"


def test_list_readers_without_pcscd_raises_service_unavailable(
    pyscard_installed: None, tmp_path: Path
) -> None:
    """pcsc-lite reads PCSCLITE_CSOCK_NAME once per process. A subprocess pointed at a
    socket that doesn't exist sees "no pcscd", even while a real pcscd runs."""
    script = (
        "from reader_agent import errors, pcsc\n"
        "try:\n"
        "    pcsc.list_readers(timeout=5.0)\n"
        "except errors.ServiceUnavailableError as exc:\n"
        "    print(type(exc).__name__, hex(exc.pcsc_code), exc.operation)\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, message = done.stdout.splitlines()[:2]
    assert first == "ServiceUnavailableError 0x8010001d SCardEstablishContext"
    assert "start it" in message
    assert "pcscd --foreground" in message


def test_deadline_abandons_a_hung_pcsc_call(
    pyscard_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung pcscd must not hang the agent: the call gives up at its own deadline."""
    from reader_agent import pcsc

    release = threading.Event()

    def hung_establish(scope: int) -> tuple[int, int]:
        release.wait(10.0)
        return errors.PcscCode.E_NO_SERVICE, 0

    monkeypatch.setattr(_SCARD + "SCardEstablishContext", hung_establish)
    started = time.monotonic()
    try:
        with pytest.raises(errors.ReaderTimeoutError) as raised:
            pcsc.list_readers(timeout=0.2)
    finally:
        release.set()  # let the abandoned worker finish
    assert time.monotonic() - started < 2.0
    assert raised.value.timeout == 0.2
    assert raised.value.pcsc_code is None


def test_no_readers_is_an_empty_list_and_other_codes_keep_their_value(
    pyscard_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reader_agent import pcsc

    monkeypatch.setattr(_SCARD + "SCardEstablishContext", lambda scope: (0, 1))
    monkeypatch.setattr(_SCARD + "SCardReleaseContext", lambda hcontext: 0)

    monkeypatch.setattr(
        _SCARD + "SCardListReaders",
        lambda hcontext, groups: (errors.PcscCode.E_NO_READERS_AVAILABLE, []),
    )
    assert pcsc.list_readers(timeout=5.0) == []

    monkeypatch.setattr(_SCARD + "SCardListReaders", lambda hcontext, groups: (0x80100099, []))
    with pytest.raises(errors.ReaderError) as raised:
        pcsc.list_readers(timeout=5.0)
    assert type(raised.value) is errors.ReaderError
    assert raised.value.pcsc_code == 0x80100099
    assert "unknown PC/SC code 0x80100099" in str(raised.value)

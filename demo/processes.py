"""The demo's helpers outside the issuer: pcscd, the emulated card and the counter page.

pcscd is reused when one already serves the PC/SC socket (a system one, or a test run's)
and started here otherwise, then stopped again. The card is our applet emulator on a
thread, plugged into the first vpcd reader with its state in a file, so the personalised
card is the same card on the next run. The counter page is ``reader-agent serve`` as a
child process, as a counter would run it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from reader_agent import pcsc
from reader_agent.emulator.applet import Applet
from reader_agent.emulator.state import StateFile
from reader_agent.emulator.vpcd import VpcdCard
from reader_agent.errors import AgentError

SLOT = 0
READER = "Virtual PCD 00 00"  # vpcd's first slot, as /etc/reader.conf.d configures it
_SOCKET = Path(os.environ.get("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm"))
_START_TIMEOUT = 15.0


class DemoError(Exception):
    """A part of the demo could not start; the message says what to do."""


def _served(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class Processes:
    """Everything the demo started, stopped in reverse order on exit (Ctrl-C included)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._stack = ExitStack()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stack.close()

    def pcscd(self) -> None:
        """A pcscd serving the socket, with the vpcd readers listed."""
        if not _served(_SOCKET):
            binary = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")
            if binary is None:
                raise DemoError("pcscd is not installed (Debian package pcscd; ./dev installs it)")
            if _SOCKET.exists():  # left by a pcscd that was killed: nothing serves it
                _SOCKET.unlink()
            # Never --auto-exit: it would quit while the page has no card connection open.
            self._spawn("pcscd", [binary, "--foreground"])
        deadline = time.monotonic() + _START_TIMEOUT
        seen: object = "no answer yet"
        while True:
            try:
                seen = pcsc.list_readers(timeout=2.0)
            except AgentError as exc:  # pcscd still binding its socket: asked again below
                seen = exc
            else:
                if READER in seen:
                    return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"pcscd does not list {READER!r} (last: {seen}): is vsmartcard-vpcd "
                    f"installed (see {self._log_dir / 'pcscd.log'})?"
                )
            time.sleep(0.2)

    def card(self, state_file: Path) -> None:
        """Insert the emulated card (its state in ``state_file``) into the first reader."""
        emulator = VpcdCard(Applet(store=StateFile(state_file)), slot=SLOT)
        emulator.start()
        self._stack.callback(emulator.stop)
        try:
            pcsc.wait_for_card(READER, timeout=_START_TIMEOUT)
        except AgentError as exc:
            raise DemoError(
                f"the emulated card did not appear in {READER!r} ({exc}); is another "
                "emulator (a test run?) using vpcd slot 0?"
            ) from None

    def counter_page(self, argv: Sequence[str], *, port: int) -> None:
        """``reader-agent serve`` with ``argv``, once its port answers."""
        if _port_open(port):
            raise DemoError(f"port {port} is taken: set READER_AGENT_PORT to another port")
        process = self._spawn("reader-agent", [sys.executable, "-m", "reader_agent", *argv])
        deadline = time.monotonic() + _START_TIMEOUT
        while not _port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise DemoError(
                    f"the counter page did not start (see {self._log_dir / 'reader-agent.log'})"
                )
            time.sleep(0.1)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self._log_dir / f"{name}.log").open("ab")
        self._stack.callback(log.close)
        process = subprocess.Popen(  # noqa: S603 - our own fixed command lines
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
        )  # fmt: skip
        self._stack.callback(_stop, process)
        return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

"""Fixtures for reader-agent tests: a pcscd with the vsmartcard vpcd driver.

Tests marked ``@pytest.mark.pcscd`` get the session-scoped :func:`pcscd` fixture
automatically. It reuses a pcscd that is already serving the PC/SC socket (a developer's, or
one started by the system). Otherwise it starts ``pcscd --foreground`` for this test run and
stops it at the end of the session. When pcscd, vpcd or pyscard is missing, the tests are
skipped locally, but they fail when ``CI=true``: CI must never skip them silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

#: The readers the vpcd config in /etc/reader.conf.d/ gives (slots 0 and 1).
VIRTUAL_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")

# pcsc-lite clients and pcscd both honour PCSCLITE_CSOCK_NAME. The pid file path is fixed at
# build time.
_SOCKET = Path(os.environ.get("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm"))
_PID_FILE = Path("/run/pcscd/pcscd.pid")
_READER_CONF_DIR = Path("/etc/reader.conf.d")

_READY_TIMEOUT = 15.0  # pcscd normally lists the vpcd readers well under a second after start
_STOP_TIMEOUT = 5.0
_CALL_TIMEOUT = 2.0  # per PC/SC call while polling


@dataclass(frozen=True, kw_only=True)
class PcscdService:
    """The pcscd the PC/SC tests run against."""

    readers: tuple[str, ...]
    #: True when this test run started pcscd and will stop it, False when an existing one is reused.
    started_here: bool
    #: pcscd's combined stdout/stderr (``--debug --apdu``) when started here, else None.
    log_path: Path | None


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where a missing PC/SC stack is a broken pipeline."""
    # Same test as tests/conftest.py, so both agree on what CI means.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PC/SC tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


def _import_pcsc() -> ModuleType:
    """Import reader_agent.pcsc (and so pyscard), or skip/fail with the reason."""
    try:
        from reader_agent import pcsc
    except ImportError as exc:
        problem = str(exc)
    else:
        return pcsc
    # Outside the except block, so the report shows the reason, not a chained traceback.
    _unavailable(
        f"pyscard is not importable ({problem}); install it with `pip install pyscard` "
        "(building it needs the Debian packages swig, libpcsclite-dev and a C compiler)"
    )


@pytest.fixture
def pyscard_installed() -> None:
    """Require pyscard (not pcscd): skip locally or fail in CI if it is missing."""
    _import_pcsc()


def _socket_state(path: Path) -> str:
    """Return ``"served"``, ``"absent"`` (no socket file) or ``"stale"`` (file, no listener)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        # A wedged pcscd with a full backlog would otherwise block connect forever.
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except FileNotFoundError:
            return "absent"
        except ConnectionRefusedError:
            return "stale"
        except TimeoutError:
            # The socket exists and something listens but does not accept: not ours to delete.
            return "served"
    return "served"


def _live_pcscd_pid() -> int | None:
    """Return the pid in pcscd's pid file if that process is a live (non-zombie) pcscd."""
    try:
        pid = int(_PID_FILE.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # /proc/PID/stat is "pid (comm) state ...". comm may contain spaces, so split on the
    # last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2 :].split(" ", 1)[0]
    return pid if comm == "pcscd" and state != "Z" else None


def _clear_stale_socket() -> None:
    """Remove the socket and pid file that a killed pcscd left behind.

    pcscd refuses to start while the socket exists and the pid file names a live process. In
    a container that pid is often reused by an unrelated process. A pcscd that is still
    alive but not accepting may be starting up, so it gets a bounded wait, never a deletion.
    """
    pid = _live_pcscd_pid()
    if pid is not None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if _socket_state(_SOCKET) == "served":
                return
            time.sleep(0.2)
        pytest.fail(
            f"pcscd (pid {pid}) is running but does not accept connections on {_SOCKET}; "
            "stop it and run the tests again",
            pytrace=False,
        )
    # Only the socket file and pcscd's own pid file are removed, and only once nothing
    # listens on the socket and no pcscd owns the pid file.
    _SOCKET.unlink(missing_ok=True)
    _PID_FILE.unlink(missing_ok=True)


def _vpcd_configured() -> bool:
    """True if a file in /etc/reader.conf.d loads the vpcd driver."""
    with contextlib.suppress(OSError):
        for conf in _READER_CONF_DIR.iterdir():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if "libifdvpcd" in conf.read_text():
                    return True
    return False


def _log_tail(log_path: Path | None, lines: int = 25) -> str:
    if log_path is None:
        return ""
    with contextlib.suppress(OSError):
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- last lines of {log_path} ---\n" + "\n".join(tail)
    return ""


def _wait_for_virtual_readers(
    pcsc: ModuleType, process: subprocess.Popen[bytes] | None, log_path: Path | None
) -> tuple[str, ...]:
    """Poll until pcscd lists both vpcd readers; fail after a bounded wait with what it saw."""
    from reader_agent import errors

    deadline = time.monotonic() + _READY_TIMEOUT
    seen: object = "nothing yet"
    while True:
        if process is not None and process.poll() is not None:
            # The pcscd we started exited. If another test run started one between our check
            # and our start, reuse it. Otherwise our pcscd is broken.
            if _socket_state(_SOCKET) != "served":
                pytest.fail(
                    f"pcscd exited with status {process.returncode} during startup"
                    + _log_tail(log_path),
                    pytrace=False,
                )
            process = None
        try:
            readers = tuple(pcsc.list_readers(timeout=_CALL_TIMEOUT))
        except errors.ServiceUnavailableError as exc:
            seen = exc  # socket not bound yet
        except errors.ReaderError as exc:
            seen = exc
        else:
            if all(name in readers for name in VIRTUAL_READERS):
                return readers
            seen = list(readers)
        if time.monotonic() >= deadline:
            pytest.fail(
                f"pcscd did not list {list(VIRTUAL_READERS)} within {_READY_TIMEOUT:g} s "
                f"(last seen: {seen}). Is vsmartcard-vpcd installed and configured in "
                f"{_READER_CONF_DIR}?" + _log_tail(log_path),
                pytrace=False,
            )
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (pcscd removes its socket and pid file), then SIGKILL if it ignores that."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT)
    # After a SIGKILL the files stay behind. They were ours, so clean them up unless another
    # pcscd took over the socket.
    if _socket_state(_SOCKET) == "stale" and _live_pcscd_pid() is None:
        _SOCKET.unlink(missing_ok=True)
        _PID_FILE.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscdService]:
    """Make sure a pcscd with the two vpcd readers serves this test session.

    Reuse a pcscd that already serves the socket. Otherwise start ``pcscd --foreground --debug
    --apdu`` with its output in a log file under pytest's tmp dir, and stop it at session end.
    """
    pcsc = _import_pcsc()

    state = _socket_state(_SOCKET)
    if state == "served":
        yield PcscdService(
            readers=_wait_for_virtual_readers(pcsc, None, None), started_here=False, log_path=None
        )
        return

    binary = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")
    if binary is None:
        _unavailable("pcscd is not installed (Debian package `pcscd`)")
    if not _vpcd_configured():
        _unavailable(
            f"no vpcd reader configured in {_READER_CONF_DIR} (Debian package `vsmartcard-vpcd`)"
        )
    if state == "stale":
        _clear_stale_socket()
        if _socket_state(_SOCKET) == "served":  # a live pcscd finished starting up meanwhile
            yield PcscdService(
                readers=_wait_for_virtual_readers(pcsc, None, None),
                started_here=False,
                log_path=None,
            )
            return

    log_path = tmp_path_factory.mktemp("pcscd") / "pcscd.log"
    with log_path.open("wb") as log:
        # Never --auto-exit: pcscd would quit between tests that leave no context open.
        process = subprocess.Popen(
            [binary, "--foreground", "--debug", "--apdu"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        readers = _wait_for_virtual_readers(pcsc, process, log_path)
        yield PcscdService(readers=readers, started_here=process.poll() is None, log_path=log_path)
    finally:
        _stop(process)


@pytest.fixture(autouse=True)
def _pcscd_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Give every ``@pytest.mark.pcscd`` test in this directory the pcscd fixture."""
    if request.node.get_closest_marker("pcscd") is not None:
        request.getfixturevalue("pcscd")


# -- emulated cards in the two vpcd slots ---------------------------------------------------

SLOT_READERS = dict(enumerate(VIRTUAL_READERS))


class EmulatedCard:
    """An emulator serving one vpcd slot on a thread, with its state file."""

    def __init__(self, slot: int, state_path: Path, *, t0: bool = False) -> None:
        from reader_agent.emulator.applet import Applet
        from reader_agent.emulator.state import StateFile
        from reader_agent.emulator.vpcd import VpcdCard

        self.slot = slot
        self.reader = SLOT_READERS[slot]
        self.state_path = state_path
        self.t0 = t0
        self.vpcd = VpcdCard(Applet(store=StateFile(state_path), t0=t0), slot=slot)

    def insert(self) -> EmulatedCard:
        from reader_agent import pcsc

        self.vpcd.start()
        pcsc.wait_for_card(self.reader, timeout=10.0)
        return self

    def remove(self) -> None:
        """Take the card out for good (stop the emulator) and wait until pcscd sees it."""
        from reader_agent import pcsc

        self.vpcd.stop()
        pcsc.wait_for_removal(self.reader, timeout=10.0)
        assert self.vpcd.error is None, f"emulator failed: {self.vpcd.error!r}"

    def restart(self) -> EmulatedCard:
        """Stop the emulator and start a new one on the same state file (a power cycle that
        also reloads everything from disk)."""
        self.remove()
        self.__init__(self.slot, self.state_path, t0=self.t0)  # type: ignore[misc]
        return self.insert()


@pytest.fixture
def emulated_card(
    request: pytest.FixtureRequest, tmp_path: Path, pcscd: PcscdService
) -> Iterator[Callable[..., EmulatedCard]]:
    """Factory: ``emulated_card(slot, t0=False)`` inserts an emulated blank card; all of
    them are removed at the end of the test."""
    cards: list[EmulatedCard] = []

    def make(slot: int = 0, *, t0: bool = False, state: Path | None = None) -> EmulatedCard:
        card = EmulatedCard(slot, state or tmp_path / f"card-{slot}-{len(cards)}.json", t0=t0)
        cards.append(card)
        return card.insert()

    yield make
    for card in cards:
        card.remove()

"""Faults through real pcscd: socket dropped mid-command, card pulled between two reads of
the card document, a garbled answer, card pulled mid-session, a hung card, pcscd restarted
mid-session. Each gives a typed error, and the next operation works
once the card (or pcscd) is back. No timing assertions: deadlines are checked by type."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from reader_agent import errors, pcsc
from reader_agent.card.session import SscSession
from reader_agent.check import check_card
from reader_agent.emulator.applet import Applet
from reader_agent.emulator.state import StateFile
from reader_agent.emulator.vpcd import Faults, VpcdCard
from reader_agent.page.words import CARD_PULLED, explain
from tests.agent.conftest import EmulatedCard
from tests.agent.test_card_pcscd import personalized
from tests.agent.world import World, emulator_process
from wording import render

pytestmark = pytest.mark.pcscd

CardFactory = Callable[..., EmulatedCard]


def _works_again(card: EmulatedCard) -> None:
    pcsc.wait_for_card(card.reader, timeout=10.0)
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        assert session.read_document()
        assert len(session.internal_authenticate(b"\x01" * 16)) == 64


def test_emulator_dropping_the_socket_mid_command(emulated_card: CardFactory) -> None:
    card = emulated_card(0)
    personalized(card, World())
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        card.vpcd.faults = Faults(drop_after=card.vpcd.apdu_count)  # the next APDU
        with pytest.raises(errors.NoCardError) as raised:
            session.read_document()
        # The connection is dead and says so; it does not pretend to work.
        with pytest.raises(errors.ReaderError):
            connection.transmit(bytes.fromhex("00a4040000"))
    assert raised.value.reader == card.reader
    _works_again(card)


def test_t0_card_pulled_between_two_reads_is_reported_removed(emulated_card: CardFactory) -> None:
    """vpcd answers the READ BINARY in flight with no bytes at all; pcscd only reports the
    card removed at its next poll. The agent waits for that and says "card removed"."""
    card = emulated_card(1, t0=True)
    personalized(card, World())
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        assert session.info.document_length > 256  # read in pieces: a second READ BINARY
        card.vpcd.faults = Faults(drop_after_reads=card.vpcd.read_count + 1)
        with pytest.raises(errors.NoCardError) as raised:
            session.read_document()
        # The dead connection keeps saying why it died.
        with pytest.raises(errors.NoCardError):
            connection.transmit(bytes.fromhex("00a4040000"))
    assert raised.value.reader == card.reader
    assert raised.value.operation == "SCardTransmit"
    assert raised.value.pcsc_code == errors.PcscCode.W_REMOVED_CARD
    _works_again(card)


def test_card_pulled_mid_read_during_the_check_is_taken_out_on_the_counter_page(
    emulated_card: CardFactory, tmp_path: Path
) -> None:
    """The emulator as its own process (`reader-agent emulate --t0 --drop-after-reads 1`)
    leaves the reader after the first READ BINARY of the genuine-card check."""
    world = World()
    state = tmp_path / "card.json"
    blank = emulated_card(1, t0=True, state=state)
    personalized(blank, world)
    blank.remove()
    cache = world.cache(tmp_path / "cache")
    with (
        emulator_process(1, state, "--t0", "--drop-after-reads", "1"),
        pcsc.connect(blank.reader, timeout=5.0) as connection,
        pytest.raises(errors.NoCardError) as raised,
    ):
        check_card(SscSession(connection), cache=cache, now=world.now)
    words = explain(raised.value)
    assert words == CARD_PULLED
    assert render("en", words.detail).startswith("The card was taken out of the reader")
    assert render("zh-CN", words.detail).startswith("这一步完成前卡片被取出了读卡器")


def test_garbled_answer_from_a_card_still_there_is_a_reader_error(
    emulated_card: CardFactory,
) -> None:
    """One byte and no status word, from a card that stays in the reader: not a removal."""
    card = emulated_card(1, t0=True)
    personalized(card, World())
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        card.vpcd.faults = Faults(truncate_after_reads=card.vpcd.read_count + 1)
        with pytest.raises(errors.ReaderError) as raised:
            session.read_document()
    assert type(raised.value) is errors.ReaderError
    assert "no status word" in raised.value.detail
    assert raised.value.reader == card.reader
    _works_again(card)


def test_card_pulled_mid_session(emulated_card: CardFactory) -> None:
    card = emulated_card(1, t0=True)
    personalized(card, World())
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        session.read_document()
        card.vpcd.remove()  # pulled; the emulator reinserts it shortly after
        with pytest.raises(errors.ReaderError):
            for _ in range(50):  # pcscd notices at its next poll
                session.internal_authenticate(b"\x02" * 16)
    _works_again(card)


def test_hung_card_gives_a_timeout_and_then_works(emulated_card: CardFactory) -> None:
    card = emulated_card(0)
    personalized(card, World())
    # Connect and select with room to spare (a loaded CI machine), then the 1 s deadline.
    with pcsc.connect(card.reader, timeout=10.0) as connection:
        session = SscSession(connection)
        connection.timeout = 1.0
        card.vpcd.faults = Faults(hang_after=card.vpcd.apdu_count)
        with pytest.raises(errors.ReaderTimeoutError) as raised:
            session.read_document()
    assert raised.value.timeout == 1.0
    assert raised.value.operation == "transmit"
    card.vpcd.release()  # the clerk pulls the stuck card and puts it back
    _works_again(card)


_CLIENT = textwrap.dedent(
    """
    import sys, time
    from reader_agent import errors, pcsc
    from reader_agent.card.session import SscSession

    READER = "Virtual PCD 00 00"

    def connected_session():
        deadline = time.monotonic() + 20
        while True:
            try:
                pcsc.wait_for_card(READER, timeout=2.0)
                connection = pcsc.connect(READER, timeout=3.0)
                return connection, SscSession(connection)
            except errors.ReaderError as exc:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    connection, session = connected_session()
    print("ready", flush=True)
    sys.stdin.readline()  # the test restarts pcscd now
    try:
        session.get_challenge(8)
        print("no error", flush=True)
    except errors.ReaderError as exc:
        print("error", type(exc).__name__, flush=True)
    connection.close()
    connection, session = connected_session()
    print("recovered", len(session.get_challenge(8)), flush=True)
    connection.close()
    """
)


def _private_pcscd(run_dir: Path, conf_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """A pcscd of our own: pcsc-lite refuses a second daemon while /run/pcscd/pcscd.comm
    belongs to a live one, so it runs in a private mount namespace with its own
    /run/pcscd (a bind mount of ``run_dir``), reachable through PCSCLITE_CSOCK_NAME."""
    pcscd = shutil.which("pcscd", path="/usr/sbin:/sbin:/usr/bin") or "pcscd"
    script = f'mount --bind "{run_dir}" /run/pcscd && exec "{pcscd}" --foreground -c "{conf_dir}"'
    with log.open("ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_pcscd_restarted_mid_session(tmp_path: Path, pcscd: object) -> None:
    """The fixture's pcscd is left alone: this test restarts a private pcscd of its own, with
    its own vpcd port, so the session's invariants hold whatever happens here."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for a private pcscd")
    port = 36000
    run_dir, conf_dir = tmp_path / "run", tmp_path / "conf"
    run_dir.mkdir()
    conf_dir.mkdir()
    (conf_dir / "vpcd").write_text(
        'FRIENDLYNAME "Virtual PCD"\n'
        f"DEVICENAME   /dev/null:0x{port:04X}\n"
        "LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"
        f"CHANNELID    0x{port:04X}\n"
    )
    log = tmp_path / "pcscd.log"
    daemon = _private_pcscd(run_dir, conf_dir, log)
    card = VpcdCard(Applet(store=StateFile(tmp_path / "card.json")), port=port).start()
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(run_dir / "pcscd.comm")}
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None and client.stdin is not None
        ready = client.stdout.readline()
        if ready.strip() != "ready":
            daemon.terminate()
            stderr = client.stderr.read() if client.stderr else ""
            pytest.fail(f"client never got a session: {ready!r} {stderr}\n{log.read_text()}")
        daemon.terminate()
        daemon.wait(10)
        daemon = _private_pcscd(run_dir, conf_dir, log)
        client.stdin.write("go\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
        card.stop()
        daemon.terminate()
        daemon.wait(10)
    lines = out.splitlines()
    assert client.returncode == 0, err
    assert lines[0].startswith("error ") and lines[0] != "error ReaderTimeoutError", lines
    assert lines[1] == "recovered 8", lines

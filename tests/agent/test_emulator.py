"""The applet as pure logic (no pcscd): status words for malformed APDUs, persistence, and
property tests on both sides of the protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reader_agent.card.constants import AID, SW
from reader_agent.card.session import SscSession
from reader_agent.emulator.applet import Applet
from reader_agent.emulator.state import EmulatorStateError, StateFile
from reader_agent.errors import AgentError, CardProtocolError
from tests.agent.world import PIN, PUK, World

SELECT = bytes.fromhex("00a4040009") + AID + b"\x00"


class Direct:
    """A CardConnection straight into an Applet (what vpcd + pcscd carry, minus the wire)."""

    def __init__(self, applet: Applet) -> None:
        self.applet = applet

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        answer = self.applet.process(apdu)
        return answer[:-2], int.from_bytes(answer[-2:], "big")


def blank(tmp_path: Path, *, t0: bool = False) -> Applet:
    applet = Applet(store=StateFile(tmp_path / "card.json"), t0=t0)
    applet.power_on()
    return applet


def locked(tmp_path: Path, *, t0: bool = False) -> Applet:
    from reader_agent.personalize import local_document_signer, personalize

    applet = blank(tmp_path, t0=t0)
    world = World()
    personalize(
        SscSession(Direct(applet)),
        sign_document=local_document_signer(world.template(), world.documents),
        pin=PIN,
        puk=PUK,
    )
    applet.power_on()
    return applet


def sw_of(applet: Applet, hex_apdu: str | bytes) -> int:
    apdu = bytes.fromhex(hex_apdu) if isinstance(hex_apdu, str) else hex_apdu
    return int.from_bytes(applet.process(apdu)[-2:], "big")


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00", SW.WRONG_LENGTH),
        ("00a404", SW.WRONG_LENGTH),
        ("00a4040005f0", SW.WRONG_LENGTH),  # Lc says 5, 1 byte follows
        ("00a4040000aa", SW.WRONG_LENGTH),  # extended header cut short
        ("00a4040006a000000003", SW.WRONG_LENGTH),
        ("00a4040005a00000000300", SW.FILE_NOT_FOUND),  # another AID
        ("00a4070000", SW.INCORRECT_P1P2),
        ("00b0000010", SW.INS_NOT_SUPPORTED),  # nothing selected yet
        ("ff00000000", SW.CLA_NOT_SUPPORTED),
    ],
)
def test_malformed_apdus_before_select(tmp_path: Path, apdu: str, sw: int) -> None:
    assert sw_of(blank(tmp_path), apdu) == sw


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00ee000000", SW.INS_NOT_SUPPORTED),
        ("802a000000", SW.WRONG_LENGTH),  # SIGN TRANSACTION without data
        ("00b0000010", SW.NO_CURRENT_EF),
        ("00b0850010", SW.FILE_NOT_FOUND),  # SFI 5
        ("00b0810010", SW.OK),
        ("00b08100", SW.WRONG_LENGTH),  # no Le
        ("00a4020c02c001;00b07fff10", SW.WRONG_OFFSET),
        ("0088000104aabbccdd00", SW.WRONG_LENGTH),  # nonce must be 16 bytes
        ("0088000201" + "00" * 2, SW.REFERENCE_NOT_FOUND),
        ("0020008301", SW.REFERENCE_NOT_FOUND),
        ("002000810c3132ffffffffffffffffffff", SW.WRONG_DATA),  # 2-digit PIN
        ("00200081", 0x63C3),  # tries left, none spent
        ("00200082", 0x63CA),  # PUK tries left
        ("802a00001100" + "00" * 16, SW.SECURITY_NOT_SATISFIED),
        ("8046000100", SW.CONDITIONS_NOT_SATISFIED),  # locked
        ("80e00000", SW.CONDITIONS_NOT_SATISFIED),
        ("0024008101", SW.WRONG_LENGTH),
        ("00a4020c02c002", SW.FILE_NOT_FOUND),
        ("00c0000010", SW.CONDITIONS_NOT_SATISFIED),  # nothing pending
        ("00b0810010aa", SW.WRONG_LENGTH),
        ("10b0810010", SW.CHAINING_NOT_SUPPORTED),
    ],
)
def test_status_words_after_select(tmp_path: Path, apdu: str, sw: int) -> None:
    applet = locked(tmp_path)
    assert sw_of(applet, SELECT) == SW.OK
    *before, last = apdu.split(";")
    for earlier in before:
        assert sw_of(applet, earlier) == SW.OK
    assert sw_of(applet, last) == sw


def test_state_survives_restart_and_is_private(tmp_path: Path) -> None:
    applet = locked(tmp_path)
    sw_of(applet, SELECT)
    assert sw_of(applet, "002000810c303030303030ffffffffffff") == 0x63C2
    again = Applet(store=StateFile(tmp_path / "card.json"))
    assert again.state.pin_tries == 2
    assert again.state.life_cycle.name == "LOCKED"
    assert (tmp_path / "card.json").stat().st_mode & 0o777 == 0o600
    assert "pin_hash" not in repr(again.state) and again.state.chip_key not in repr(again.state)


@pytest.mark.parametrize(
    "content", [b"not json", b"[]", json.dumps({"version": 1, "pin_tries": -1}).encode()]
)
def test_damaged_state_file_is_a_typed_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(content)
    with pytest.raises(EmulatorStateError):
        Applet(store=StateFile(path))


_apdus = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda cla, ins, p1p2, body: bytes((cla, ins)) + p1p2 + body,
        st.sampled_from([0x00, 0x10, 0x80, 0x90, 0xFF]),
        st.sampled_from(
            [0xA4, 0xB0, 0x84, 0x88, 0x20, 0x24, 0x2C, 0xC0, 0x2A, 0x32, 0x46, 0xD0, 0xDA, 0xE0]
        ),
        st.binary(min_size=2, max_size=2),
        st.binary(max_size=40),
    ),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(apdus=st.lists(_apdus, min_size=1, max_size=8), t0=st.booleans(), select=st.booleans())
def test_random_apdus_always_get_a_status_word(
    tmp_path_factory: pytest.TempPathFactory, apdus: list[bytes], t0: bool, select: bool
) -> None:
    applet = locked(tmp_path_factory.mktemp("fuzz"), t0=t0)
    if select:
        applet.process(SELECT)
    for apdu in apdus:
        answer = applet.process(apdu)
        assert len(answer) >= 2
        # 6F00 is the applet's "internal failure" answer: random input must never reach it.
        assert answer[-2:] != b"\x6f\x00", apdu.hex()


class Garbled:
    """A card whose answers are random: data and status words from hypothesis."""

    def __init__(self, answers: list[tuple[bytes, int]]) -> None:
        self.answers = answers

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if not self.answers:
            return b"", 0x6F00
        return self.answers.pop(0)


_answers = st.lists(
    st.tuples(
        st.one_of(st.binary(max_size=80), st.just(b"")),
        st.one_of(
            st.sampled_from([0x9000, 0x6282, 0x63C1, 0x6983, 0x6985, 0x6100, 0x6C10, 0x6A82]),
            st.integers(0, 0xFFFF),
        ),
    ),
    max_size=12,
)


@settings(max_examples=200)
@given(answers=_answers)
def test_garbled_card_answers_raise_typed_errors(answers: list[tuple[bytes, int]]) -> None:
    connection = Garbled(list(answers))
    try:
        session = SscSession(connection)
        session.read_document()
        session.internal_authenticate(b"\x00" * 16)
        session.pin_status()
        session.verify_pin(PIN)
        session.generate_key()
    except AgentError:
        pass


def test_fci_from_a_stranger_is_a_protocol_error() -> None:
    connection = Garbled([(bytes.fromhex("6f03840100"), 0x9000)])
    with pytest.raises(CardProtocolError):
        SscSession(connection)


# --- SM2 chip keys (GENERATE KEY P1 01) --------------------------------------------------


def test_an_sm2_chip_key_signs_internal_authenticate_and_transactions(tmp_path: Path) -> None:
    import secrets

    from reader_agent.card.constants import AUTH_CONTEXT
    from reader_agent.emulator.state import CardState

    applet = blank(tmp_path)
    session = SscSession(Direct(applet))
    chip_key = session.generate_key("SM2SM3")
    assert chip_key.alg == "SM2SM3" and chip_key.jwk()["crv"] == "SM2"
    state = StateFile(tmp_path / "card.json").load()
    assert state.chip_alg == "SM2SM3"
    assert CardState.from_json(json.loads(json.dumps(state.to_json()))) == state
    nonce = secrets.token_bytes(16)
    chip_key.verify_raw(session.internal_authenticate(nonce), AUTH_CONTEXT + nonce)
    # An ES256 key on the same card after a new GENERATE KEY: the algorithm follows the key.
    es_key = session.generate_key()
    assert es_key.alg == "ES256" and StateFile(tmp_path / "card.json").load().chip_alg == "ES256"
    es_key.verify_raw(session.internal_authenticate(nonce), AUTH_CONTEXT + nonce)


def test_a_personalised_sm2_card_signs_transactions_with_sm2(tmp_path: Path) -> None:
    import secrets

    from reader_agent.card.constants import TRANSACTION_CONTEXT
    from reader_agent.personalize import local_document_signer, personalize

    applet = blank(tmp_path)
    world = World()
    result = personalize(
        SscSession(Direct(applet)),
        sign_document=local_document_signer(world.template(), world.documents),
        pin=PIN,
        puk=PUK,
        chip_alg="SM2SM3",
    )
    assert result.chip_key.alg == "SM2SM3"
    applet.power_on()
    session = SscSession(Direct(applet))
    session.verify_pin(PIN)
    nonce, data = secrets.token_bytes(16), b'{"amount_fen":350000}'
    signed = session.sign_transaction(nonce, data)
    message = TRANSACTION_CONTEXT + nonce + signed.counter.to_bytes(4, "big") + data
    result.chip_key.verify_raw(signed.signature, message)


def test_generate_key_with_an_unknown_algorithm_is_6a86(tmp_path: Path) -> None:
    applet = blank(tmp_path)
    assert sw_of(applet, SELECT) == SW.OK
    assert sw_of(applet, "8046020100") == SW.INCORRECT_P1P2
    with pytest.raises(ValueError):
        SscSession(Direct(applet)).generate_key("RS256")


def test_a_state_file_with_an_unknown_chip_algorithm_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    blank(tmp_path)
    StateFile(path).save(StateFile(path).load())
    obj = json.loads(path.read_text())
    obj["chip_alg"] = "RS256"
    path.write_text(json.dumps(obj))
    with pytest.raises(EmulatorStateError, match="chip_alg"):
        StateFile(path).load()

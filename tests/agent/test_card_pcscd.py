"""The applet client, the genuine-card check and personalisation through real pcscd + vpcd
and the card emulator, on both virtual slots (slot 1 answers like a T=0 card)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from cardsvc.core.statuslist import Status
from reader_agent import errors, pcsc
from reader_agent.card.constants import AUTH_CONTEXT, TRANSACTION_CONTEXT
from reader_agent.card.session import SscSession
from reader_agent.check import Outcome, Step, Verdict, check_card
from reader_agent.personalize import (
    PersonalizationError,
    local_document_signer,
    personalize,
)
from tests.agent.conftest import EmulatedCard
from tests.agent.world import PIN, PUK, World

pytestmark = pytest.mark.pcscd

CardFactory = Callable[..., EmulatedCard]
SLOTS = [pytest.param(0, False, id="slot0-T1"), pytest.param(1, True, id="slot1-T0-style")]


def personalized(card: EmulatedCard, world: World, *, idx: int = 7) -> str:
    """Personalise ``card`` with a document signed in-process; return the document."""
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        result = personalize(
            SscSession(connection),
            sign_document=local_document_signer(world.template(idx=idx), world.documents),
            pin=PIN,
            puk=PUK,
        )
    return result.document


def run_check(card: EmulatedCard, world: World, cache_dir: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    cache = kwargs.pop("cache", None) or world.cache(cache_dir)
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        return check_card(SscSession(connection), cache=cache, now=world.now, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("slot", "t0"), SLOTS)
def test_personalize_then_genuine_check_with_pin(
    emulated_card: CardFactory, tmp_path: Path, slot: int, t0: bool
) -> None:
    world = World()
    card = emulated_card(slot, t0=t0)
    personalized(card, world)
    result = run_check(card, world, tmp_path / "cache", pin=lambda tries: PIN)
    assert result.verdict is Verdict.GENUINE, result.steps
    assert [s.outcome for s in result.steps] == [Outcome.PASSED] * 5
    assert result.document is not None
    assert str(result.document.card_number) == "A12345678"
    assert result.status == Status.VALID


def test_personalization_commands_after_lock_answer_6985(
    emulated_card: CardFactory, tmp_path: Path
) -> None:
    world = World()
    card = emulated_card(0)
    personalized(card, world)
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        for attempt in (session.generate_key, session.lock, lambda: session.set_pin("111111")):
            with pytest.raises(errors.ConditionsNotSatisfiedError) as raised:
                attempt()
            assert raised.value.sw == 0x6985
        with pytest.raises(PersonalizationError):
            personalize(
                session,
                sign_document=local_document_signer(world.template(), world.documents),
                pin=PIN,
                puk=PUK,
            )


def test_copied_document_on_another_chip_is_a_clone(
    emulated_card: CardFactory, tmp_path: Path
) -> None:
    world = World()
    original = emulated_card(0)
    document = personalized(original, world)
    # The cloner has the genuine document (it is readable by anyone) but not the chip key.
    clone = emulated_card(1)
    with pcsc.connect(clone.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        session.generate_key()
        session.write_document(document.encode())
        session.set_pin(PIN)
        session.set_puk(PUK)
        session.lock()
    result = run_check(clone, world, tmp_path / "cache", pin=lambda tries: PIN)
    assert result.verdict is Verdict.CLONE
    steps = {s.step: s for s in result.steps}
    assert steps[Step.VERIFY_DOCUMENT].outcome is Outcome.PASSED
    assert steps[Step.CHIP_AUTHENTICATION].outcome is Outcome.FAILED
    assert "clone" in steps[Step.CHIP_AUTHENTICATION].reason
    assert steps[Step.PIN].outcome is Outcome.SKIPPED  # never ask a clone for the PIN


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(Status.INVALID, Verdict.REVOKED), (Status.SUSPENDED, Verdict.SUSPENDED)],
)
def test_revoked_or_suspended_card_is_rejected_with_its_status(
    emulated_card: CardFactory, tmp_path: Path, status: Status, verdict: Verdict
) -> None:
    world = World()
    card = emulated_card(0)
    personalized(card, world, idx=42)
    cache = world.cache(tmp_path / "cache", statuses={42: status})
    result = run_check(card, world, tmp_path, cache=cache, pin=lambda tries: PIN)
    assert result.verdict is verdict
    assert result.status == status
    steps = {s.step: s for s in result.steps}
    assert status.name in steps[Step.STATUS].reason
    assert steps[Step.PIN].outcome is Outcome.SKIPPED


def test_stale_status_list_gives_no_verdict(emulated_card: CardFactory, tmp_path: Path) -> None:
    world = World()
    card = emulated_card(0)
    personalized(card, world)
    cache = world.cache(tmp_path / "cache")
    old = World(root=world.root, documents=world.documents, statuses=world.statuses)
    old.now = world.now + timedelta(hours=30)  # the counter PC's clock, a day later
    result = run_check(card, old, tmp_path, cache=cache)
    assert result.verdict is Verdict.STATUS_UNKNOWN
    assert "old" in {s.step: s for s in result.steps}[Step.STATUS].reason


def test_pin_last_try_needs_override_and_blocked_pin_survives_restart(
    emulated_card: CardFactory, tmp_path: Path
) -> None:
    world = World()
    card = emulated_card(0)
    personalized(card, world)
    cache = world.cache(tmp_path / "cache")
    for expected_left in (2, 1):
        result = run_check(card, world, tmp_path, cache=cache, pin=lambda tries: "000000")
        assert result.verdict is Verdict.PIN_FAILED
        assert result.pin_tries_left == expected_left
    asked: list[int] = []
    refused = run_check(
        card, world, tmp_path, cache=cache, pin=lambda tries: asked.append(tries) or PIN
    )
    assert refused.verdict is Verdict.PIN_REFUSED
    assert asked == []  # the prompt was never shown
    blocked = run_check(
        card, world, tmp_path, cache=cache, pin=lambda tries: "000000", allow_last_try=True
    )
    assert blocked.verdict is Verdict.PIN_FAILED and blocked.pin_tries_left == 0

    card.restart()  # new emulator process state, loaded from the state file
    after = run_check(card, world, tmp_path, cache=cache, pin=lambda tries: PIN)
    assert after.verdict is Verdict.PIN_BLOCKED
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        with pytest.raises(errors.PinBlockedError):
            session.verify_pin(PIN)
        with pytest.raises(errors.InvalidPinError) as wrong_puk:
            session.unblock_pin("11111111", "654321")
        assert wrong_puk.value.tries_left == 9
        session.unblock_pin(PUK, "654321")
        session.verify_pin("654321")
        session.change_pin("654321", PIN)
    assert run_check(card, world, tmp_path, cache=cache, pin=lambda t: PIN).genuine


@pytest.mark.parametrize(("slot", "t0"), SLOTS)
def test_sign_transaction_needs_pin_and_counts(
    emulated_card: CardFactory, tmp_path: Path, slot: int, t0: bool
) -> None:
    world = World()
    card = emulated_card(slot, t0=t0)
    personalized(card, world)
    chip_key = run_check(card, world, tmp_path / "cache").document.chip_key  # type: ignore[union-attr]
    nonce, data = secrets.token_bytes(16), b'{"amount_fen":12345}' * 20  # > 255: chaining on T=0
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        with pytest.raises(errors.SecurityStatusError):
            session.sign_transaction(nonce, data)
        session.verify_pin(PIN)
        first = session.sign_transaction(nonce, data)
        second = session.sign_transaction(nonce, data)
    assert (first.counter, second.counter) == (1, 2)
    for signed in (first, second):
        message = TRANSACTION_CONTEXT + nonce + signed.counter.to_bytes(4, "big") + data
        chip_key.verify_raw(signed.signature, message)
    card.restart()
    with pcsc.connect(card.reader, timeout=5.0) as connection:
        session = SscSession(connection)
        assert session.get_counter() == 2
        with pytest.raises(errors.SecurityStatusError):  # the PIN does not survive a reset
            session.sign_transaction(nonce, data)


def test_both_slots_at_once(emulated_card: CardFactory, tmp_path: Path) -> None:
    world = World()
    cards = [emulated_card(0), emulated_card(1, t0=True)]
    for card in cards:
        personalized(card, world)
    connections = [pcsc.connect(card.reader, timeout=5.0) for card in cards]
    try:
        sessions = [SscSession(c) for c in connections]
        nonce = secrets.token_bytes(16)
        # Interleaved on two readers: each card answers on its own handle.
        signatures = [s.internal_authenticate(nonce) for s in sessions]
    finally:
        for c in connections:
            c.close()
    for card, signature in zip(cards, signatures, strict=True):
        doc = run_check(card, world, tmp_path / f"cache-{card.slot}").document
        assert doc is not None
        doc.chip_key.verify_raw(signature, AUTH_CONTEXT + nonce)

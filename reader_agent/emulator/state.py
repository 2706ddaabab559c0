"""Persistent state of an emulated card, kept in a JSON file written atomically (0600).

What a real card keeps in EEPROM survives here across emulator restarts: life cycle, chip
key, card document, PIN and PUK (salted hashes) with their retry counters, and the
transaction counter. Session state (PIN verified, selected file) is not persisted: it
is lost on power-off like on a card.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from cardsvc.core.files import write_atomically
from reader_agent.card.constants import PIN_TRIES, PUK_TRIES, LifeCycle
from reader_agent.errors import AgentError

STATE_VERSION: Final = 1


class EmulatorStateError(AgentError):
    """The emulator's state file cannot be read or written."""

    code = "emulator-state"


@dataclass(frozen=True, kw_only=True)
class CardState:
    """Everything the emulated card keeps across power cycles."""

    life_cycle: LifeCycle = LifeCycle.BLANK
    #: Chip private key: the scalar as hex, or "" before GENERATE KEY.
    chip_key: str = ""
    #: The chip key's algorithm: "ES256" (P-256) or "SM2SM3" (SM2, third-generation cards).
    chip_alg: str = "ES256"
    #: Card document (compact JWS bytes) as hex, "" when not written.
    document: str = ""
    pin_salt: str = ""
    pin_hash: str = ""
    pin_tries: int = PIN_TRIES
    puk_salt: str = ""
    puk_hash: str = ""
    puk_tries: int = PUK_TRIES
    tx_counter: int = 0

    def __repr__(self) -> str:
        # Never print key or PIN material (tests and logs may repr a state).
        return (
            f"CardState(life_cycle={self.life_cycle.name}, key={'set' if self.chip_key else '-'}"
            f", document={len(self.document) // 2} bytes, pin_tries={self.pin_tries}, "
            f"puk_tries={self.puk_tries}, tx_counter={self.tx_counter})"
        )

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self), "life_cycle": self.life_cycle.name}

    @classmethod
    def from_json(cls, obj: object) -> CardState:
        if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
            raise EmulatorStateError("state file is not a version 1 card state")
        fields = {k: v for k, v in obj.items() if k != "version"}
        try:
            fields["life_cycle"] = LifeCycle[fields.get("life_cycle", "BLANK")]
            state = replace(cls(), **fields)
        except (KeyError, TypeError) as exc:
            raise EmulatorStateError(f"state file has a bad field: {exc}") from None
        if state.chip_alg not in ("ES256", "SM2SM3"):
            raise EmulatorStateError("state field chip_alg must be ES256 or SM2SM3")
        for name in ("pin_tries", "puk_tries", "tx_counter"):
            value = getattr(state, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EmulatorStateError(f"state field {name} must be a non-negative integer")
        for name in ("chip_key", "document", "pin_salt", "pin_hash", "puk_salt", "puk_hash"):
            value = getattr(state, name)
            try:
                bytes.fromhex(value)
            except (TypeError, ValueError):
                raise EmulatorStateError(f"state field {name} must be hex") from None
        return state


class StateFile:
    """A :class:`CardState` in a file. :meth:`save` is atomic: temp file, fsync, rename.

    A crash mid-write leaves either the old or the new state, never a torn one, which is
    what keeps a PIN retry counter from being reset by pulling the plug.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> CardState:
        """The saved state, or a blank card if the file does not exist yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return CardState()
        except OSError as exc:
            raise EmulatorStateError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise EmulatorStateError(f"{self.path} is not JSON: {exc}") from None
        return CardState.from_json(obj)

    def save(self, state: CardState) -> None:
        data = json.dumps(state.to_json(), sort_keys=True).encode()
        try:
            write_atomically(self.path, data)
        except OSError as exc:
            raise EmulatorStateError(f"cannot write {self.path}: {exc.strerror}") from None

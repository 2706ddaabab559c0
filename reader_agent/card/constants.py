"""Constants of the cardsvc card applet (docs/card-protocol.md): AID, INS, status words.

Shared by the client session and the emulator. Only constants live here: the client and
the emulator each implement their own side of the protocol, so a bug in one is not
silently mirrored by the other.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

#: Application identifier. RID F0... is the ISO 7816-5 range for unregistered,
#: proprietary applications; "CARDSVC" in ASCII, then the applet version 01.
AID: Final = bytes.fromhex("F04341524453564301")

#: File identifier of the card document EF (transparent file, read with READ BINARY).
CARD_DOCUMENT_FID: Final = 0xC001
#: Short file identifier of the card document EF (READ BINARY with P1 = 0x80 | SFI).
CARD_DOCUMENT_SFI: Final = 0x01
#: Largest card document the applet stores (bytes); cardsvc.core caps documents at 8 KiB.
MAX_CARD_DOCUMENT: Final = 8 * 1024

#: Key reference of the chip authentication key (INTERNAL AUTHENTICATE P2).
CHIP_KEY_REF: Final = 0x01
#: GENERATE KEY P1: the chip key's algorithm (ECDSA P-256 / SHA-256, or SM2 / SM3).
KEY_ALG_P256: Final = 0x00
KEY_ALG_SM2: Final = 0x01
#: The key algorithm of each GENERATE KEY P1, as cardsvc.core names it.
KEY_ALGORITHMS: Final = {KEY_ALG_P256: "ES256", KEY_ALG_SM2: "SM2SM3"}
#: PIN references (VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER P2).
PIN_REF: Final = 0x81
PUK_REF: Final = 0x82

PIN_MIN: Final = 6
PIN_MAX: Final = 12
PUK_LENGTH: Final = 8
PIN_TRIES: Final = 3
PUK_TRIES: Final = 10

#: Terminal nonces for INTERNAL AUTHENTICATE and SIGN TRANSACTION are exactly this long.
NONCE_LENGTH: Final = 16
#: Largest transaction data SIGN TRANSACTION accepts.
MAX_TRANSACTION_DATA: Final = 1024

#: Context strings prepended to what the chip signs. A signature made for one purpose can
#: then never be replayed as the other (an authentication answer is not a transaction).
AUTH_CONTEXT: Final = b"cardsvc-chip-auth-v1\x00"
TRANSACTION_CONTEXT: Final = b"cardsvc-transaction-v1\x00"

#: ATR the emulator presents: TS=3B, T0=80 (TD1 follows), TD1=80 (T=0, TD2 follows),
#: TD2=01 (T=1), TCK=01.
ATR: Final = bytes.fromhex("3B80800101")

#: PINs and PUKs travel in 12-byte blocks: ASCII digits, padded with FF (PIV style), so
#: CHANGE and RESET RETRY COUNTER can carry two of them without length fields.
PIN_BLOCK_LENGTH: Final = 12
PIN_PAD: Final = 0xFF

#: FCI proprietary template tags (A5 inside 6F), see docs/card-protocol.md.
TAG_FCI: Final = 0x6F
TAG_DF_NAME: Final = 0x84
TAG_PROPRIETARY: Final = 0xA5
TAG_VERSION: Final = 0x80
TAG_LIFE_CYCLE: Final = 0x81
TAG_FEATURES: Final = 0x82
TAG_DOC_LENGTH: Final = 0x83

#: Bit in TAG_FEATURES: the card accepts extended length APDUs.
FEATURE_EXTENDED_LENGTH: Final = 0x01

APPLET_VERSION: Final = 1


class Cla(IntEnum):
    """Class bytes the applet accepts."""

    ISO = 0x00
    ISO_CHAINED = 0x10
    PROPRIETARY = 0x80


class Ins(IntEnum):
    """Instruction bytes (ISO 7816-4 where one exists, proprietary with CLA 80)."""

    SELECT = 0xA4
    READ_BINARY = 0xB0
    GET_CHALLENGE = 0x84
    INTERNAL_AUTHENTICATE = 0x88
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    GET_RESPONSE = 0xC0
    # Proprietary, CLA 80.
    SIGN_TRANSACTION = 0x2A
    GET_COUNTER = 0x32
    GENERATE_KEY = 0x46
    WRITE_DOCUMENT = 0xD0
    SET_PIN = 0xDA
    LOCK = 0xE0


class LifeCycle(IntEnum):
    """Life-cycle state of the applet (FCI tag 81)."""

    BLANK = 0x01  # personalisation commands allowed
    LOCKED = 0x07  # personalised and locked: personalisation commands answer 6985


class SW(IntEnum):
    """Status words the applet and the agent tell apart.

    Not exhaustive: use :func:`as_sw` so a status word outside this list is kept as a
    plain ``int`` instead of crashing the caller.
    """

    OK = 0x9000
    WARN_EOF = 0x6282
    WARN_DEACTIVATED = 0x6283
    WRONG_LENGTH = 0x6700
    CHAINING_NOT_SUPPORTED = 0x6884
    SECURITY_NOT_SATISFIED = 0x6982
    AUTH_BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    NO_CURRENT_EF = 0x6986
    WRONG_DATA = 0x6A80
    FUNC_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_NOT_FOUND = 0x6A88
    WRONG_OFFSET = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_DIAGNOSIS = 0x6F00
    # Families: the low byte carries a number.
    BYTES_AVAILABLE = 0x6100  # 61xx: xx more bytes, fetch with GET RESPONSE
    WRONG_LE = 0x6C00  # 6Cxx: resend with Le = xx
    VERIFY_FAILED = 0x63C0  # 63Cx: x tries left


def as_sw(value: int) -> SW | int:
    """Return ``value`` as an :class:`SW` member when it is one we name, else the plain int."""
    try:
        return SW(value)
    except ValueError:
        return value


def describe_sw(value: int) -> str:
    """Name a status word for messages: ``6982 (SECURITY_NOT_SATISFIED)``."""
    high = value & 0xFF00
    if high in (0x6100, 0x6C00):
        return f"{value:04X} ({SW(high).name}, xx={value & 0xFF})"
    if value & 0xFFF0 == 0x63C0:
        return f"{value:04X} (VERIFY_FAILED, {value & 0x0F} tries left)"
    sw = as_sw(value)
    return f"{value:04X} ({sw.name})" if isinstance(sw, SW) else f"{value:04X} (unknown)"

"""The cardsvc applet as pure logic: bytes in, response bytes (data + status word) out.

:meth:`Applet.process` never raises: every malformed APDU gets the status word
docs/card-protocol.md names, and an unexpected internal failure answers 6F00 (the
hypothesis tests hold it to that). Persistent changes go through :class:`StateFile` before
the answer leaves, and PIN retry counters are decremented *before* the PIN is compared,
as cards do, so tearing the card away mid-VERIFY never yields a free try.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from cardsvc.core.sm2 import SM2SM3, Sm2PrivateKey
from reader_agent.card.constants import (
    AID,
    APPLET_VERSION,
    AUTH_CONTEXT,
    CARD_DOCUMENT_FID,
    CARD_DOCUMENT_SFI,
    CHIP_KEY_REF,
    FEATURE_EXTENDED_LENGTH,
    KEY_ALG_SM2,
    KEY_ALGORITHMS,
    MAX_CARD_DOCUMENT,
    MAX_TRANSACTION_DATA,
    NONCE_LENGTH,
    PIN_BLOCK_LENGTH,
    PIN_MAX,
    PIN_MIN,
    PIN_PAD,
    PIN_REF,
    PIN_TRIES,
    PUK_LENGTH,
    PUK_REF,
    PUK_TRIES,
    SW,
    TAG_DF_NAME,
    TAG_DOC_LENGTH,
    TAG_FCI,
    TAG_FEATURES,
    TAG_LIFE_CYCLE,
    TAG_PROPRIETARY,
    TAG_VERSION,
    TRANSACTION_CONTEXT,
    Ins,
    LifeCycle,
)
from reader_agent.emulator.state import CardState, StateFile

_log = logging.getLogger(__name__)

_MAX_COUNTER = 0xFFFFFFFF
_MAX_CHAIN = MAX_CARD_DOCUMENT + 64


class _SwReplyError(Exception):
    """Internal: end command processing with this status word (and optional data)."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw
        self.data = data


@dataclass(frozen=True, kw_only=True, slots=True)
class _Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le; else 1..65536
    extended: bool


def _parse(apdu: bytes) -> _Command:
    """ISO 7816-4 cases 1-4, short and extended; any other shape is 6700."""
    if len(apdu) < 4:
        raise _SwReplyError(SW.WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    data, le, extended = b"", None, False
    if len(body) == 1:  # case 2 short
        le = body[0] or 256
    elif len(body) > 1 and body[0] != 0:  # case 3/4 short
        lc = body[0]
        if len(body) == 1 + lc:
            data = body[1:]
        elif len(body) == 2 + lc:
            data, le = body[1:-1], body[-1] or 256
        else:
            raise _SwReplyError(SW.WRONG_LENGTH)
    elif len(body) > 1:  # extended
        extended = True
        if len(body) == 3:  # case 2 extended
            le = int.from_bytes(body[1:3], "big") or 65536
        elif len(body) < 3:
            raise _SwReplyError(SW.WRONG_LENGTH)
        else:
            lc = int.from_bytes(body[1:3], "big")
            if lc == 0:
                raise _SwReplyError(SW.WRONG_LENGTH)
            if len(body) == 3 + lc:
                data = body[3:]
            elif len(body) == 5 + lc:
                data, le = body[3:-2], int.from_bytes(body[-2:], "big") or 65536
            else:
                raise _SwReplyError(SW.WRONG_LENGTH)
    return _Command(cla=cla, ins=ins, p1=p1, p2=p2, data=data, le=le, extended=extended)


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes((tag, len(value))) + value
    return bytes((tag, 0x81 if len(value) < 0x100 else 0x82)) + (
        len(value).to_bytes(1 if len(value) < 0x100 else 2, "big") + value
    )


def _pin_from_block(block: bytes, *, puk: bool) -> bytes:
    """Digits from a 12-byte FF-padded block; 6A80 if the block is not a valid PIN/PUK."""
    if len(block) != PIN_BLOCK_LENGTH:
        raise _SwReplyError(SW.WRONG_LENGTH)
    digits = block.rstrip(bytes((PIN_PAD,)))
    ok_length = len(digits) == PUK_LENGTH if puk else PIN_MIN <= len(digits) <= PIN_MAX
    if not ok_length or not all(0x30 <= b <= 0x39 for b in digits):
        raise _SwReplyError(SW.WRONG_DATA)
    return digits


def _hash(salt: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(b"cardsvc-emulator-pin\x00" + salt + secret).digest()


@dataclass(kw_only=True)
class _Session:
    """Volatile state: gone on power-off, reset or a new SELECT."""

    selected: bool = False
    ef_selected: bool = False
    pin_verified: bool = False
    pending: bytes = b""  # T=0: data waiting for GET RESPONSE
    pending_sw: int = SW.OK
    chain: tuple[int, int, int, bytes] | None = None  # (ins, p1, p2, data so far)


@dataclass(kw_only=True)
class Applet:
    """The applet over a :class:`StateFile`. ``t0`` makes it answer like a T=0 card:
    61xx + GET RESPONSE for data after command data, 6Cxx for a wrong Le, no extended length.
    """

    store: StateFile
    t0: bool = False
    state: CardState = field(init=False)
    _session: _Session = field(init=False, default_factory=_Session)

    def __post_init__(self) -> None:
        self.state = self.store.load()

    def power_on(self) -> None:
        """Power-on or reset: session state is lost (PIN no longer verified)."""
        self._session = _Session()

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data + status word. Never raises."""
        try:
            data, sw = self._dispatch(apdu)
        except _SwReplyError as reply:
            data, sw = reply.data, reply.sw
        except Exception:  # the contract is "always a status word"; the log says why
            _log.exception("applet failed on INS %02X", apdu[1] if len(apdu) > 1 else -1)
            data, sw = b"", SW.NO_DIAGNOSIS
        return data + sw.to_bytes(2, "big")

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(self, apdu: bytes) -> tuple[bytes, int]:
        command = _parse(apdu)
        session = self._session
        if command.extended and self.t0:
            raise _SwReplyError(SW.WRONG_LENGTH)
        if command.ins == Ins.GET_RESPONSE and command.cla & 0xFC == 0:
            return self._get_response(command)
        session.pending = b""
        if command.cla not in (0x00, 0x10, 0x80, 0x90):
            raise _SwReplyError(SW.CLA_NOT_SUPPORTED)
        command = self._chain(command)
        if command.ins == Ins.SELECT and command.cla == 0x00:
            data, sw = self._select(command)
        elif not session.selected:
            # Only the card manager answers before SELECT, and it knows none of our INS.
            raise _SwReplyError(SW.INS_NOT_SUPPORTED)
        else:
            data, sw = self._applet_command(command)
        return self._shape(command, data, sw)

    def _applet_command(self, command: _Command) -> tuple[bytes, int]:
        iso = {
            Ins.READ_BINARY: self._read_binary,
            Ins.GET_CHALLENGE: self._get_challenge,
            Ins.INTERNAL_AUTHENTICATE: self._internal_authenticate,
            Ins.VERIFY: self._verify,
            Ins.CHANGE_REFERENCE_DATA: self._change_pin,
            Ins.RESET_RETRY_COUNTER: self._reset_retry_counter,
        }
        proprietary = {
            Ins.SIGN_TRANSACTION: self._sign_transaction,
            Ins.GET_COUNTER: self._get_counter,
            Ins.GENERATE_KEY: self._generate_key,
            Ins.WRITE_DOCUMENT: self._write_document,
            Ins.SET_PIN: self._set_pin,
            Ins.LOCK: self._lock,
        }
        table = iso if command.cla == 0x00 else proprietary
        handler = table.get(command.ins)  # type: ignore[call-overload]
        if handler is None:
            other = proprietary if command.cla == 0x00 else iso
            wrong_class = command.ins in other
            raise _SwReplyError(SW.CLA_NOT_SUPPORTED if wrong_class else SW.INS_NOT_SUPPORTED)
        result: tuple[bytes, int] = handler(command)
        return result

    def _chain(self, command: _Command) -> _Command:
        """Collect chained pieces (CLA bit 0x10); only WRITE DOCUMENT and SIGN TRANSACTION."""
        session = self._session
        chain = session.chain
        chained = bool(command.cla & 0x10)
        if chain is not None and (chain[0], chain[1], chain[2]) != (
            command.ins,
            command.p1,
            command.p2,
        ):
            session.chain = chain = None  # another command abandons the chain
        if not chained and chain is None:
            return command
        if command.cla & ~0x10 != 0x80 or command.ins not in (
            Ins.WRITE_DOCUMENT,
            Ins.SIGN_TRANSACTION,
        ):
            session.chain = None
            raise _SwReplyError(SW.CHAINING_NOT_SUPPORTED)
        so_far = (chain[3] if chain else b"") + command.data
        if len(so_far) > _MAX_CHAIN:
            session.chain = None
            raise _SwReplyError(SW.NOT_ENOUGH_MEMORY)
        if chained:
            session.chain = (command.ins, command.p1, command.p2, so_far)
            raise _SwReplyError(SW.OK)
        session.chain = None
        return replace(command, cla=0x80, data=so_far)

    def _shape(self, command: _Command, data: bytes, sw: int) -> tuple[bytes, int]:
        """T=0 behaviour: data after command data comes via 61xx; a wrong Le gets 6Cxx."""
        if not self.t0 or not data or sw not in (SW.OK, SW.WARN_EOF):
            return data, sw
        if command.data or command.le is None:
            self._session.pending, self._session.pending_sw = data, sw
            return b"", 0x6100 | (min(len(data), 256) & 0xFF)
        if command.le != len(data) and len(data) <= 256:
            return b"", 0x6C00 | (len(data) & 0xFF)
        return data, sw

    def _get_response(self, command: _Command) -> tuple[bytes, int]:
        session = self._session
        if command.p1 or command.p2:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if not session.pending:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        if command.data or command.le is None:
            raise _SwReplyError(SW.WRONG_LENGTH)
        if command.le > len(session.pending):
            return b"", 0x6C00 | (len(session.pending) & 0xFF)
        out, session.pending = session.pending[: command.le], session.pending[command.le :]
        if session.pending:
            return out, 0x6100 | (min(len(session.pending), 256) & 0xFF)
        return out, session.pending_sw

    # -- ISO commands -------------------------------------------------------------------

    def _select(self, command: _Command) -> tuple[bytes, int]:
        session = self._session
        if command.p1 == 0x04 and command.p2 in (0x00, 0x0C):
            if command.data != AID:
                session.selected = session.ef_selected = False
                raise _SwReplyError(SW.FILE_NOT_FOUND)
            self._session = _Session(selected=True)
            return (self._fci() if command.p2 == 0x00 else b""), SW.OK
        if command.p1 == 0x02 and command.p2 == 0x0C:
            if not session.selected:
                raise _SwReplyError(SW.FILE_NOT_FOUND)
            if len(command.data) != 2:
                raise _SwReplyError(SW.WRONG_LENGTH)
            if int.from_bytes(command.data, "big") != CARD_DOCUMENT_FID:
                raise _SwReplyError(SW.FILE_NOT_FOUND)
            session.ef_selected = True
            return b"", SW.OK
        raise _SwReplyError(SW.INCORRECT_P1P2)

    def _fci(self) -> bytes:
        features = 0 if self.t0 else FEATURE_EXTENDED_LENGTH
        proprietary = (
            _tlv(TAG_VERSION, bytes((APPLET_VERSION,)))
            + _tlv(TAG_LIFE_CYCLE, bytes((self.state.life_cycle,)))
            + _tlv(TAG_FEATURES, bytes((features,)))
            + _tlv(TAG_DOC_LENGTH, (len(self.state.document) // 2).to_bytes(2, "big"))
        )
        return _tlv(TAG_FCI, _tlv(TAG_DF_NAME, AID) + _tlv(TAG_PROPRIETARY, proprietary))

    def _read_binary(self, command: _Command) -> tuple[bytes, int]:
        session = self._session
        if command.data or command.le is None:
            raise _SwReplyError(SW.WRONG_LENGTH)
        if command.p1 & 0x80:
            if command.p1 & 0x60:
                raise _SwReplyError(SW.INCORRECT_P1P2)
            if command.p1 & 0x1F != CARD_DOCUMENT_SFI:
                raise _SwReplyError(SW.FILE_NOT_FOUND)
            session.ef_selected = True
            offset = command.p2
        else:
            if not session.ef_selected:
                raise _SwReplyError(SW.NO_CURRENT_EF)
            offset = (command.p1 << 8) | command.p2
        document = bytes.fromhex(self.state.document)
        if not document:
            raise _SwReplyError(SW.FILE_NOT_FOUND)
        if offset >= len(document):
            raise _SwReplyError(SW.WRONG_OFFSET)
        chunk = document[offset : offset + command.le]
        if len(chunk) < command.le and not self.t0:
            return chunk, SW.WARN_EOF
        return chunk, SW.OK

    def _get_challenge(self, command: _Command) -> tuple[bytes, int]:
        if command.p1 or command.p2:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if command.data or command.le is None or command.le > 256:
            raise _SwReplyError(SW.WRONG_LENGTH)
        return secrets.token_bytes(command.le), SW.OK

    def _internal_authenticate(self, command: _Command) -> tuple[bytes, int]:
        if command.p1 != 0:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if command.p2 != CHIP_KEY_REF or not self.state.chip_key:
            raise _SwReplyError(SW.REFERENCE_NOT_FOUND)
        if len(command.data) != NONCE_LENGTH:
            raise _SwReplyError(SW.WRONG_LENGTH)
        return self._sign(AUTH_CONTEXT + command.data), SW.OK

    def _verify(self, command: _Command) -> tuple[bytes, int]:
        puk = self._pin_ref(command)
        _salt, digest, tries = self._pin_fields(puk)
        if not digest:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        if not command.data:
            if tries == 0:
                raise _SwReplyError(SW.AUTH_BLOCKED)
            if not puk and self._session.pin_verified:
                return b"", SW.OK
            return b"", 0x63C0 | tries
        if puk:
            raise _SwReplyError(SW.INCORRECT_P1P2)  # the PUK is only presented with a new PIN
        pin = _pin_from_block(command.data, puk=False)
        self._check_secret(pin, puk=False)
        self._session.pin_verified = True
        return b"", SW.OK

    def _change_pin(self, command: _Command) -> tuple[bytes, int]:
        if self._pin_ref(command):
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if len(command.data) != 2 * PIN_BLOCK_LENGTH:
            raise _SwReplyError(SW.WRONG_LENGTH)
        old = _pin_from_block(command.data[:PIN_BLOCK_LENGTH], puk=False)
        new = _pin_from_block(command.data[PIN_BLOCK_LENGTH:], puk=False)
        if not self.state.pin_hash:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        self._check_secret(old, puk=False)
        self._store_pin(new, puk=False)
        self._session.pin_verified = True
        return b"", SW.OK

    def _reset_retry_counter(self, command: _Command) -> tuple[bytes, int]:
        if self._pin_ref(command):
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if len(command.data) != 2 * PIN_BLOCK_LENGTH:
            raise _SwReplyError(SW.WRONG_LENGTH)
        puk = _pin_from_block(command.data[:PIN_BLOCK_LENGTH], puk=True)
        new = _pin_from_block(command.data[PIN_BLOCK_LENGTH:], puk=False)
        if not self.state.puk_hash or not self.state.pin_hash:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        self._check_secret(puk, puk=True)
        self._store_pin(new, puk=False)
        self._session.pin_verified = False
        return b"", SW.OK

    # -- proprietary commands -----------------------------------------------------------

    def _sign_transaction(self, command: _Command) -> tuple[bytes, int]:
        if command.p1 or command.p2:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        size = len(command.data) - NONCE_LENGTH
        if not 1 <= size <= MAX_TRANSACTION_DATA:
            raise _SwReplyError(SW.WRONG_LENGTH)
        if self.state.life_cycle is not LifeCycle.LOCKED:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        if not self._session.pin_verified:
            raise _SwReplyError(SW.SECURITY_NOT_SATISFIED)
        if self.state.tx_counter >= _MAX_COUNTER:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        counter = self.state.tx_counter + 1
        # The counter is committed before the signature leaves: a torn transaction burns a
        # counter value, it never lets two records share one.
        self._save(replace(self.state, tx_counter=counter))
        nonce, tx_data = command.data[:NONCE_LENGTH], command.data[NONCE_LENGTH:]
        counter_bytes = counter.to_bytes(4, "big")
        signature = self._sign(TRANSACTION_CONTEXT + nonce + counter_bytes + tx_data)
        return counter_bytes + signature, SW.OK

    def _get_counter(self, command: _Command) -> tuple[bytes, int]:
        if command.p1 or command.p2:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if command.data:
            raise _SwReplyError(SW.WRONG_LENGTH)
        return self.state.tx_counter.to_bytes(4, "big"), SW.OK

    def _generate_key(self, command: _Command) -> tuple[bytes, int]:
        self._require_blank()
        if command.p1 not in KEY_ALGORITHMS or command.p2 != CHIP_KEY_REF:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if command.data:
            raise _SwReplyError(SW.WRONG_LENGTH)
        if command.p1 == KEY_ALG_SM2:
            sm2_key = Sm2PrivateKey.generate()
            self._save(
                replace(
                    self.state,
                    chip_key=sm2_key.scalar.to_bytes(32, "big").hex(),
                    chip_alg=SM2SM3,
                    document="",
                )
            )
            return sm2_key.public_key().point(), SW.OK
        key = ec.generate_private_key(ec.SECP256R1())
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        # A new key makes any document written for the old one a lie: drop it.
        self._save(replace(self.state, chip_key=scalar.hex(), chip_alg="ES256", document=""))
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point, SW.OK

    def _write_document(self, command: _Command) -> tuple[bytes, int]:
        self._require_blank()
        if command.p1 or command.p2:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if not command.data:
            raise _SwReplyError(SW.WRONG_LENGTH)
        if len(command.data) > MAX_CARD_DOCUMENT:
            raise _SwReplyError(SW.NOT_ENOUGH_MEMORY)
        if not self.state.chip_key:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        self._save(replace(self.state, document=command.data.hex()))
        return b"", SW.OK

    def _set_pin(self, command: _Command) -> tuple[bytes, int]:
        self._require_blank()
        puk = self._pin_ref(command)
        if command.p1:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        self._store_pin(_pin_from_block(command.data, puk=puk), puk=puk)
        return b"", SW.OK

    def _lock(self, command: _Command) -> tuple[bytes, int]:
        self._require_blank()
        if command.p1 or command.p2:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if command.data:
            raise _SwReplyError(SW.WRONG_LENGTH)
        state = self.state
        if not (state.chip_key and state.document and state.pin_hash and state.puk_hash):
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)
        self._save(replace(state, life_cycle=LifeCycle.LOCKED))
        return b"", SW.OK

    # -- helpers ------------------------------------------------------------------------

    def _require_blank(self) -> None:
        if self.state.life_cycle is not LifeCycle.BLANK:
            raise _SwReplyError(SW.CONDITIONS_NOT_SATISFIED)

    @staticmethod
    def _pin_ref(command: _Command) -> bool:
        """True for the PUK reference, False for the PIN; 6A86/6A88 otherwise."""
        if command.p1 != 0:
            raise _SwReplyError(SW.INCORRECT_P1P2)
        if command.p2 not in (PIN_REF, PUK_REF):
            raise _SwReplyError(SW.REFERENCE_NOT_FOUND)
        return command.p2 == PUK_REF

    def _pin_fields(self, puk: bool) -> tuple[bytes, bytes, int]:
        s = self.state
        if puk:
            return bytes.fromhex(s.puk_salt), bytes.fromhex(s.puk_hash), s.puk_tries
        return bytes.fromhex(s.pin_salt), bytes.fromhex(s.pin_hash), s.pin_tries

    def _check_secret(self, secret: bytes, *, puk: bool) -> None:
        salt, digest, tries = self._pin_fields(puk)
        if tries == 0:
            raise _SwReplyError(SW.AUTH_BLOCKED)
        # Decrement first and persist, then compare: the card cannot be torn away between
        # a wrong comparison and recording it.
        self._save(self._with_tries(puk, tries - 1))
        if not hmac.compare_digest(_hash(salt, secret), digest):
            self._session.pin_verified = False
            raise _SwReplyError(0x63C0 | (tries - 1))
        self._save(self._with_tries(puk, PUK_TRIES if puk else PIN_TRIES))

    def _with_tries(self, puk: bool, tries: int) -> CardState:
        if puk:
            return replace(self.state, puk_tries=tries)
        return replace(self.state, pin_tries=tries)

    def _store_pin(self, secret: bytes, *, puk: bool) -> None:
        salt = secrets.token_bytes(16)
        if puk:
            new = replace(
                self.state,
                puk_salt=salt.hex(),
                puk_hash=_hash(salt, secret).hex(),
                puk_tries=PUK_TRIES,
            )
        else:
            new = replace(
                self.state,
                pin_salt=salt.hex(),
                pin_hash=_hash(salt, secret).hex(),
                pin_tries=PIN_TRIES,
            )
        self._save(new)

    def _sign(self, message: bytes) -> bytes:
        scalar = int.from_bytes(bytes.fromhex(self.state.chip_key), "big")
        if self.state.chip_alg == SM2SM3:
            return Sm2PrivateKey.from_scalar(scalar).sign(message)
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _save(self, state: CardState) -> None:
        self.store.save(state)
        self.state = state

"""The applet client: :class:`SscSession` sends one command per method (docs/card-protocol.md)
and returns typed results, or raises typed errors from :mod:`reader_agent.errors`.

Every answer from the card is parsed strictly: a response that does not have the shape the
protocol promises raises :class:`~reader_agent.errors.CardProtocolError`, never an
IndexError or a half-parsed value.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.errors import DecodeError
from cardsvc.core.keys import ES256, VerifyingKey
from cardsvc.core.sm2 import SM2SM3, Sm2PublicKey
from reader_agent.apdu import ApduProcessor, CardConnection, CommandApdu, Response, processor_stack
from reader_agent.card.constants import (
    AID,
    CARD_DOCUMENT_SFI,
    CHIP_KEY_REF,
    FEATURE_EXTENDED_LENGTH,
    KEY_ALGORITHMS,
    MAX_CARD_DOCUMENT,
    MAX_TRANSACTION_DATA,
    NONCE_LENGTH,
    PIN_BLOCK_LENGTH,
    PIN_MAX,
    PIN_MIN,
    PIN_PAD,
    PIN_REF,
    PUK_LENGTH,
    PUK_REF,
    SW,
    TAG_DF_NAME,
    TAG_DOC_LENGTH,
    TAG_FCI,
    TAG_FEATURES,
    TAG_LIFE_CYCLE,
    TAG_PROPRIETARY,
    TAG_VERSION,
    Ins,
    LifeCycle,
    describe_sw,
)
from reader_agent.errors import (
    ApduError,
    ApplicationNotFoundError,
    CardNotPersonalizedError,
    CardProtocolError,
    ConditionsNotSatisfiedError,
    InvalidPinError,
    InvalidPinFormatError,
    PinBlockedError,
    SecurityStatusError,
)

__all__ = ["AppletInfo", "PinStatus", "SscSession", "TransactionSignature", "pin_block"]

_SIGNATURE_LENGTH = 64
_SHORT_READ = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class AppletInfo:
    """What SELECT tells about the applet (its FCI)."""

    version: int
    life_cycle: LifeCycle | int
    extended_length: bool
    document_length: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PinStatus:
    """Result of VERIFY without data. ``tries_left`` is None when the PIN is verified in
    this session already (the card then answers 9000, not a count)."""

    tries_left: int | None
    verified: bool

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionSignature:
    """SIGN TRANSACTION's answer: the counter value used and the chip's r||s signature."""

    counter: int
    signature: bytes


def pin_block(secret: str, *, puk: bool = False) -> bytes:
    """The 12-byte block a PIN (6-12 digits) or PUK (8 digits) travels in: digits, FF pad.

    Raises InvalidPinFormatError before anything reaches the card.
    """
    what = "PUK" if puk else "PIN"
    if not (secret.isascii() and secret.isdigit()):
        raise InvalidPinFormatError(f"{what} must be ASCII digits only")
    ok = len(secret) == PUK_LENGTH if puk else PIN_MIN <= len(secret) <= PIN_MAX
    if not ok:
        wanted = f"{PUK_LENGTH}" if puk else f"{PIN_MIN} to {PIN_MAX}"
        raise InvalidPinFormatError(f"{what} must have {wanted} digits, got {len(secret)}")
    return secret.encode("ascii").ljust(PIN_BLOCK_LENGTH, bytes((PIN_PAD,)))


def _parse_tlv(data: bytes) -> dict[int, bytes]:
    """One level of BER-TLV with one-byte tags (all the FCI uses). Raises CardProtocolError."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise CardProtocolError("truncated TLV in the card's answer")
        tag, length = data[i], data[i + 1]
        i += 2
        if length == 0x81 or length == 0x82:
            n = length - 0x80
            if i + n > len(data):
                raise CardProtocolError("truncated TLV length in the card's answer")
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        elif length > 0x7F:
            raise CardProtocolError(f"unsupported TLV length byte {length:02X}")
        if i + length > len(data):
            raise CardProtocolError(f"TLV tag {tag:02X} runs past the end of the answer")
        if tag in out:
            raise CardProtocolError(f"TLV tag {tag:02X} repeated")
        out[tag] = data[i : i + length]
        i += length
    return out


def _check(response: Response, command: str) -> Response:
    """Map a status word to the typed error; return the response on 9000."""
    sw = response.sw
    if sw == SW.OK:
        return response
    detail = f"{command}: card answered {describe_sw(sw)}"
    if sw & 0xFFF0 == SW.VERIFY_FAILED:
        tries = sw & 0x0F
        raise InvalidPinError(
            f"{command}: wrong PIN, {tries} tries left", sw=sw, command=command, tries_left=tries
        )
    if sw == SW.AUTH_BLOCKED:
        raise PinBlockedError(f"{command}: blocked", sw=sw, command=command)
    if sw == SW.SECURITY_NOT_SATISFIED:
        raise SecurityStatusError(detail + " (verify the PIN first)", sw=sw, command=command)
    if sw == SW.CONDITIONS_NOT_SATISFIED:
        raise ConditionsNotSatisfiedError(detail, sw=sw, command=command)
    raise ApduError(detail, sw=sw, command=command, data=response.data)


class SscSession:
    """A session with the cardsvc applet on one card. Selects the applet when built.

    ``connection`` is any ``CardConnection`` (pcsc, or a mock in tests); the APDU stack over
    it handles 61xx/6Cxx, and extended length or chaining as the card's FCI allows.
    """

    def __init__(self, connection: CardConnection) -> None:
        self.connection = connection
        self._stack: ApduProcessor = processor_stack(connection, extended=False)
        self.info = self.select()
        self._stack = processor_stack(connection, extended=self.info.extended_length)

    def _send(self, command: CommandApdu) -> Response:
        try:
            return self._stack.send(command)
        except ValueError as exc:  # command too large for a short-only card
            raise CardProtocolError(f"cannot send INS {command.ins:02X}: {exc}") from None

    # -- ISO commands -------------------------------------------------------------------

    def select(self) -> AppletInfo:
        """SELECT the applet by AID; parse its FCI."""
        response = self._send(CommandApdu(cla=0, ins=Ins.SELECT, p1=4, p2=0, data=AID, le=256))
        if response.sw == SW.FILE_NOT_FOUND:
            raise ApplicationNotFoundError(
                "this card has no cardsvc applet", sw=response.sw, command="SELECT"
            )
        _check(response, "SELECT")
        fci = _parse_tlv(response.data)
        if set(fci) != {TAG_FCI}:
            raise CardProtocolError("SELECT answer is not an FCI template (6F)")
        inner = _parse_tlv(fci[TAG_FCI])
        if inner.get(TAG_DF_NAME) != AID or TAG_PROPRIETARY not in inner:
            raise CardProtocolError("FCI does not name our applet")
        prop = _parse_tlv(inner[TAG_PROPRIETARY])
        try:
            (version,) = prop[TAG_VERSION]
            (life,) = prop[TAG_LIFE_CYCLE]
            (features,) = prop[TAG_FEATURES]
            doc_length = prop[TAG_DOC_LENGTH]
        except (KeyError, ValueError):
            raise CardProtocolError("FCI proprietary template is incomplete") from None
        if len(doc_length) != 2:
            raise CardProtocolError("FCI document length is not 2 bytes")
        length = int.from_bytes(doc_length, "big")
        if length > MAX_CARD_DOCUMENT:
            raise CardProtocolError(f"card claims a {length}-byte document")
        try:
            life_cycle: LifeCycle | int = LifeCycle(life)
        except ValueError:
            life_cycle = life
        return AppletInfo(
            version=version,
            life_cycle=life_cycle,
            extended_length=bool(features & FEATURE_EXTENDED_LENGTH),
            document_length=length,
        )

    def read_document(self) -> bytes:
        """The card document (compact JWS bytes): one extended READ BINARY where the card
        allows it, 256-byte pieces otherwise."""
        total = self.info.document_length
        if total == 0:
            raise CardNotPersonalizedError("the card holds no card document (blank card)")
        chunk = total if self.info.extended_length else min(total, _SHORT_READ)
        # The first read selects the EF through its short file identifier (P1 = 80 | SFI).
        first = self._read(0x80 | CARD_DOCUMENT_SFI, 0, chunk)
        document = bytearray(first)
        while len(document) < total:
            offset = len(document)
            if offset > 0x7FFF:
                raise CardProtocolError("document offset beyond READ BINARY's 15-bit range")
            piece = self._read(offset >> 8, offset & 0xFF, min(total - offset, _SHORT_READ))
            if not piece:
                raise CardProtocolError("READ BINARY returned no data before the end")
            document += piece
        if len(document) != total:
            raise CardProtocolError(
                f"card returned {len(document)} document bytes, its FCI said {total}"
            )
        return bytes(document)

    def _read(self, p1: int, p2: int, le: int) -> bytes:
        response = self._send(CommandApdu(cla=0, ins=Ins.READ_BINARY, p1=p1, p2=p2, le=le))
        if response.sw == SW.WARN_EOF:
            return response.data
        data = _check(response, "READ BINARY").data
        if len(data) > le:
            raise CardProtocolError(f"READ BINARY returned {len(data)} bytes for Le {le}")
        return data

    def get_challenge(self, length: int = 16) -> bytes:
        """``length`` random bytes from the card."""
        response = _check(
            self._send(CommandApdu(cla=0, ins=Ins.GET_CHALLENGE, p1=0, p2=0, le=length)),
            "GET CHALLENGE",
        )
        if len(response.data) != length:
            raise CardProtocolError(f"GET CHALLENGE returned {len(response.data)} bytes")
        return response.data

    def internal_authenticate(self, nonce: bytes) -> bytes:
        """The chip's raw r||s signature over AUTH_CONTEXT || ``nonce`` (16 bytes)."""
        if len(nonce) != NONCE_LENGTH:
            raise ValueError(f"nonce must be {NONCE_LENGTH} bytes")
        command = CommandApdu(
            cla=0, ins=Ins.INTERNAL_AUTHENTICATE, p1=0, p2=CHIP_KEY_REF, data=nonce, le=256
        )
        data = _check(self._send(command), "INTERNAL AUTHENTICATE").data
        if len(data) != _SIGNATURE_LENGTH:
            raise CardProtocolError(f"INTERNAL AUTHENTICATE returned {len(data)} bytes, not 64")
        return data

    def pin_status(self, *, puk: bool = False) -> PinStatus:
        """VERIFY without data: tries left (PIN or PUK) without spending one."""
        ref = PUK_REF if puk else PIN_REF
        response = self._send(CommandApdu(cla=0, ins=Ins.VERIFY, p1=0, p2=ref))
        if response.sw == SW.OK:
            return PinStatus(tries_left=None, verified=True)
        if response.sw & 0xFFF0 == SW.VERIFY_FAILED:
            return PinStatus(tries_left=response.sw & 0x0F, verified=False)
        if response.sw == SW.AUTH_BLOCKED:
            return PinStatus(tries_left=0, verified=False)
        _check(response, "VERIFY")
        raise CardProtocolError(f"VERIFY status query answered {describe_sw(response.sw)}")

    def verify_pin(self, pin: str) -> None:
        """VERIFY the PIN. Raises InvalidPinError(tries_left) or PinBlockedError."""
        block = pin_block(pin)
        _check(
            self._send(CommandApdu(cla=0, ins=Ins.VERIFY, p1=0, p2=PIN_REF, data=block)),
            "VERIFY",
        )

    def change_pin(self, old: str, new: str) -> None:
        """CHANGE REFERENCE DATA: old PIN block || new PIN block."""
        data = pin_block(old) + pin_block(new)
        command = CommandApdu(cla=0, ins=Ins.CHANGE_REFERENCE_DATA, p1=0, p2=PIN_REF, data=data)
        _check(self._send(command), "CHANGE PIN")

    def unblock_pin(self, puk: str, new_pin: str) -> None:
        """RESET RETRY COUNTER: PUK block || new PIN block; the PIN gets its full tries back."""
        data = pin_block(puk, puk=True) + pin_block(new_pin)
        command = CommandApdu(cla=0, ins=Ins.RESET_RETRY_COUNTER, p1=0, p2=PIN_REF, data=data)
        _check(self._send(command), "RESET RETRY COUNTER")

    # -- proprietary commands -----------------------------------------------------------

    def sign_transaction(self, nonce: bytes, data: bytes) -> TransactionSignature:
        """Increment the card's transaction counter and sign (nonce, data, counter).

        Needs a successful :meth:`verify_pin` in this session (else SecurityStatusError).
        """
        if len(nonce) != NONCE_LENGTH:
            raise ValueError(f"nonce must be {NONCE_LENGTH} bytes")
        if not 1 <= len(data) <= MAX_TRANSACTION_DATA:
            raise ValueError(f"transaction data must be 1..{MAX_TRANSACTION_DATA} bytes")
        command = CommandApdu(
            cla=0x80, ins=Ins.SIGN_TRANSACTION, p1=0, p2=0, data=nonce + data, le=256
        )
        answer = _check(self._send(command), "SIGN TRANSACTION").data
        if len(answer) != 4 + _SIGNATURE_LENGTH:
            raise CardProtocolError(f"SIGN TRANSACTION returned {len(answer)} bytes, not 68")
        return TransactionSignature(counter=int.from_bytes(answer[:4], "big"), signature=answer[4:])

    def get_counter(self) -> int:
        """The card's transaction counter (number of SIGN TRANSACTIONs ever made)."""
        command = CommandApdu(cla=0x80, ins=Ins.GET_COUNTER, p1=0, p2=0, le=4)
        data = _check(self._send(command), "GET COUNTER").data
        if len(data) != 4:
            raise CardProtocolError(f"GET COUNTER returned {len(data)} bytes, not 4")
        return int.from_bytes(data, "big")

    # -- personalisation (only before LOCK; 6985 afterwards) ----------------------------

    def generate_key(self, alg: str = ES256) -> VerifyingKey:
        """Generate the chip key pair on the card; return its public key.

        ``alg`` is ES256 (a P-256 key) or SM2SM3 (an SM2 key, as third-generation cards
        carry), sent as GENERATE KEY's P1.
        """
        p1 = next((p for p, name in KEY_ALGORITHMS.items() if name == alg), None)
        if p1 is None:
            raise ValueError(f"a chip key is ES256 or SM2SM3, not {alg}")
        command = CommandApdu(cla=0x80, ins=Ins.GENERATE_KEY, p1=p1, p2=CHIP_KEY_REF, le=256)
        point = _check(self._send(command), "GENERATE KEY").data
        if len(point) != 65 or point[0] != 0x04:
            raise CardProtocolError("GENERATE KEY did not return an uncompressed point")
        if alg == SM2SM3:
            try:
                return VerifyingKey(public_key=Sm2PublicKey.from_point(point))
            except DecodeError:
                raise CardProtocolError("GENERATE KEY returned a point not on SM2") from None
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            return VerifyingKey(public_key=public)
        except (ValueError, DecodeError):
            raise CardProtocolError("GENERATE KEY returned a point not on P-256") from None

    def write_document(self, document: bytes) -> None:
        """Write the (issuer-signed) card document; extended length or chaining as needed."""
        if not 1 <= len(document) <= MAX_CARD_DOCUMENT:
            raise ValueError(f"card document must be 1..{MAX_CARD_DOCUMENT} bytes")
        command = CommandApdu(cla=0x80, ins=Ins.WRITE_DOCUMENT, p1=0, p2=0, data=document)
        _check(self._send(command), "WRITE DOCUMENT")

    def set_pin(self, pin: str) -> None:
        """Set the initial PIN (personalisation)."""
        command = CommandApdu(cla=0x80, ins=Ins.SET_PIN, p1=0, p2=PIN_REF, data=pin_block(pin))
        _check(self._send(command), "SET PIN")

    def set_puk(self, puk: str) -> None:
        """Set the PUK (personalisation)."""
        data = pin_block(puk, puk=True)
        _check(
            self._send(CommandApdu(cla=0x80, ins=Ins.SET_PIN, p1=0, p2=PUK_REF, data=data)),
            "SET PUK",
        )

    def lock(self) -> None:
        """End personalisation for good: personalisation commands answer 6985 from now on."""
        _check(self._send(CommandApdu(cla=0x80, ins=Ins.LOCK, p1=0, p2=0)), "LOCK")

"""Device-bound offline QR tokens (SSC2): codec, both signatures, slot, every refusal named."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
import qrcode
import qrcode.constants
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.core import cose, devicebound
from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.credential import (
    MAX_CREDENTIAL_SIZE,
    CompactCredential,
    compressed_point,
    encode_compact_credential,
    verify_compact_credential,
)
from cardsvc.core.devicebound import (
    SCHEME_PREFIX,
    SLOT_SECONDS,
    device_hint,
    present,
    slot_of,
    verify_device_bound,
)
from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import Attribute, Purpose
from cardsvc.core.signing import LocalSigner, Signer
from cardsvc.core.verifier import OfflineVerifier, Outcome
from tests.core.conftest import NOW, Issuer, new_signer
from tests.core.test_qrtoken import TYPICAL
from tests.core.test_verifier import GOOD, REVOKED, SUSPENDED, bundle

LEEWAY = timedelta(seconds=5)
# The middle of a slot, so "one slot off" is unambiguous.
AT = datetime.fromtimestamp(slot_of(NOW + timedelta(minutes=5)) * SLOT_SECONDS + 15, UTC)
PHONE = new_signer()
#: What the issuer puts in an offline identity credential: no photo reference (useless
#: without a network).
OFFLINE = {
    **TYPICAL,
    Purpose.IDENTITY: {
        k: v for k, v in TYPICAL[Purpose.IDENTITY].items() if k is not Attribute.PHOTO_REF
    },
}


def credential(
    issuer: Issuer, purpose: Purpose = Purpose.TRANSPORT, *, signer: Signer | None = None, **kw: Any
) -> bytes:
    fields: dict[str, Any] = {
        "issuer": "https://issuer.test",
        "purpose": purpose,
        "ecard_ref": b"\x05" * 8,
        "status_shard": 0,
        "status_idx": GOOD,
        "device_point": compressed_point(PHONE.verifying_key()),
        "expires_at": NOW + timedelta(days=7),
        "attributes": OFFLINE[purpose],
    }
    fields.update(kw)
    return encode_compact_credential(
        CompactCredential(**fields), signer or issuer.signer(KeyPurpose.ECARD)
    )


def wrap(
    cred: bytes,
    *,
    device: LocalSigner = PHONE,
    slot: int | None = None,
    counter: int = 1,
    purpose: int = Purpose.TRANSPORT,
    hint: bytes | None = None,
) -> str:
    """A wrapper built by hand: what a forger (or a buggy wallet) can send."""
    body = [cred, slot_of(AT) if slot is None else slot, counter, purpose]
    if hint is None:
        hint = device_hint(compressed_point(device.verifying_key()))
    message = cose.sign1(cose.encode_cbor(body), device, kid=hint, tagged=False)
    return SCHEME_PREFIX + b45encode(message)


def qr(issuer: Issuer, purpose: Purpose = Purpose.TRANSPORT, *, counter: int = 1, **kw: Any) -> str:
    return present(credential(issuer, purpose, **kw), PHONE, purpose=purpose, now=AT,
                   counter=counter)  # fmt: skip


def check(issuer: Issuer, text: str, **kw: Any) -> str:
    kw.setdefault("now", AT)
    kw.setdefault("purpose", Purpose.TRANSPORT)
    with pytest.raises(VerificationError) as info:
        verify_device_bound(text, trust_list=issuer.trust_list, leeway=LEEWAY, **kw)
    return info.value.check


@pytest.mark.parametrize("purpose", list(Purpose))
def test_every_purpose_round_trips_with_only_its_attributes(
    issuer: Issuer, purpose: Purpose
) -> None:
    text = qr(issuer, purpose, counter=7)
    assert text.startswith("SSC2:")
    got = verify_device_bound(
        text, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY, purpose=purpose
    )
    assert got.purpose is purpose and got.slot == slot_of(AT) and got.counter == 7
    assert dict(got.credential.attributes) == OFFLINE[purpose]
    assert got.credential.device_key.kid == PHONE.kid
    assert got.replay_key == b"\x05" * 8 + slot_of(AT).to_bytes(4) + (7).to_bytes(4)


def _qr_version(text: str) -> int:
    # optimize=0: one alphanumeric segment, the worst case whatever digits base45 makes.
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text, optimize=0)
    code.make(fit=True)
    return int(code.version)


@pytest.mark.parametrize("purpose", [Purpose.IDENTITY, Purpose.TRANSPORT])
def test_typical_identity_and_transport_tokens_fit_qr_version_12_at_m(
    issuer: Issuer, purpose: Purpose
) -> None:
    # Worst typical case: a four-character name, the largest shard and index numbers
    # (2 + 4 bytes), a per-slot counter (one byte up to 23).
    for counter in (0, 23):
        text = qr(issuer, purpose, counter=counter, status_idx=2**32 - 1, status_shard=65_535)
        assert _qr_version(text) <= 12, (purpose, len(text))


def test_one_slot_of_skew_either_way_and_no_more(issuer: Issuer) -> None:
    cred = credential(issuer)
    for offset in (-1, 0, 1):
        text = wrap(cred, slot=slot_of(AT) + offset)
        assert verify_device_bound(text, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)
    for offset in (-2, 2, -1000):
        assert check(issuer, wrap(cred, slot=slot_of(AT) + offset)) == "slot"
    assert check(issuer, wrap(cred, slot=slot_of(AT) - 1), skew_slots=0) == "slot"
    with pytest.raises(ValueError, match="skew_slots"):
        verify_device_bound(
            wrap(cred), trust_list=issuer.trust_list, now=AT, leeway=LEEWAY, skew_slots=2
        )


def test_another_phone_wrapping_a_copied_credential_is_refused(issuer: Issuer) -> None:
    thief = new_signer()
    cred = credential(issuer)
    assert check(issuer, wrap(cred, device=thief)) == "device-mismatch"
    # Naming the bound phone's key in the hint does not help: the signature decides.
    genuine_hint = device_hint(compressed_point(PHONE.verifying_key()))
    assert check(issuer, wrap(cred, device=thief, hint=genuine_hint)) == "device-signature"


def test_a_damaged_device_signature_is_refused(issuer: Issuer) -> None:
    raw = bytearray(b45decode(qr(issuer)[len(SCHEME_PREFIX) :]))
    raw[-1] ^= 0x01
    assert check(issuer, SCHEME_PREFIX + b45encode(bytes(raw))) == "device-signature"


def test_credential_checks_are_named(issuer: Issuer) -> None:
    assert check(issuer, qr(issuer, expires_at=AT - timedelta(seconds=6))) == "expired"
    card_key = issuer.signer(KeyPurpose.CARD_DOCUMENT)
    assert check(issuer, wrap(credential(issuer, signer=card_key))) == "key-purpose"
    assert check(issuer, wrap(credential(issuer, signer=new_signer()))) == "key-unknown"
    cred = bytearray(credential(issuer))
    at = cred.index(b"\x05" * 8)  # the e-card reference, inside the signed payload
    cred[at] ^= 0xFF
    assert check(issuer, wrap(bytes(cred))) == "signature"


def test_credential_with_unknown_claims_is_refused(issuer: Issuer) -> None:
    good = CompactCredential(
        issuer="https://issuer.test",
        purpose=Purpose.TRANSPORT,
        ecard_ref=b"\x05" * 8,
        status_shard=0,
        status_idx=GOOD,
        device_point=compressed_point(PHONE.verifying_key()),
        expires_at=NOW + timedelta(days=7),
        attributes=OFFLINE[Purpose.TRANSPORT],
    )
    ecard = issuer.signer(KeyPurpose.ECARD)
    from cardsvc.core.keys import short_kid

    for claims in (
        {**good.to_cbor(), 9: 1},
        {**good.to_cbor(), 5: b"\x02" + b"\xff" * 32},  # not a point on the curve
        {**good.to_cbor(), 5: b"\x04" + bytes(32)},
        {**good.to_cbor(), 4: {1: "张三"}},  # a name in a transport credential
        {**good.to_cbor(), 6: "tomorrow"},
    ):
        cred = cose.sign1(cose.encode_cbor(claims), ecard, kid=short_kid(ecard.kid), tagged=False)
        assert check(issuer, wrap(cred)) == "claims", claims


def test_purpose_of_wrapper_credential_and_gate_must_agree(issuer: Issuer) -> None:
    cred = credential(issuer, Purpose.IDENTITY)
    assert check(issuer, wrap(cred, purpose=Purpose.TRANSPORT), purpose=None) == "purpose"
    assert check(issuer, wrap(cred, purpose=Purpose.IDENTITY)) == "purpose"


def test_the_wallet_refuses_to_wrap_what_no_gate_would_take(issuer: Issuer) -> None:
    cred = credential(issuer, Purpose.TRANSPORT)
    with pytest.raises(ValueError, match="not a identity credential"):
        present(cred, PHONE, purpose=Purpose.IDENTITY, now=AT, counter=1)
    with pytest.raises(ValueError, match="another device key"):
        present(cred, new_signer(), purpose=Purpose.TRANSPORT, now=AT, counter=1)
    with pytest.raises(ValueError, match="counter"):
        present(cred, PHONE, purpose=Purpose.TRANSPORT, now=AT, counter=-1)
    # A private key works as well as a signer (a wallet without a secure element).
    text = present(cred, PHONE.private_key, purpose=Purpose.TRANSPORT, now=AT, counter=2)
    assert verify_device_bound(text, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)


# -- malformed input ------------------------------------------------------------------------


def _wrapper_with(payload: object) -> str:
    message = cose.sign1(cose.encode_cbor(payload), PHONE, kid=b"\0" * 4, tagged=False)
    return SCHEME_PREFIX + b45encode(message)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {1: 2},
        [b"x", 1, 2],
        ["cred", 1, 2, 5],
        [b"x", -1, 2, 5],
        [b"x", 2**32, 2, 5],
        [b"x", 1, 2**32, 5],
        [b"x", 1, True, 5],
        [b"x", 1, 2, 8],
        [b"x", 1, 2, 5, 6],
    ],
)
def test_malformed_payloads_are_decode_errors(issuer: Issuer, payload: object) -> None:
    with pytest.raises(DecodeError):
        verify_device_bound(
            _wrapper_with(payload), trust_list=issuer.trust_list, now=AT, leeway=LEEWAY
        )


def test_prefixes_other_than_ssc2_are_refused(issuer: Issuer) -> None:
    body = qr(issuer)[len(SCHEME_PREFIX) :]
    for prefix in ("SSC1:", "HC1:", "ssc2:", ""):
        with pytest.raises(DecodeError, match="not a SSC2"):
            verify_device_bound(prefix + body, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)


def test_size_limits_come_before_any_decoding(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(text: str) -> bytes:
        raise AssertionError("base45 ran on oversized input")

    monkeypatch.setattr(devicebound, "b45decode", no_decoding)
    with pytest.raises(InputTooLargeError):
        verify_device_bound(
            SCHEME_PREFIX + "0" * 5000, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY
        )


def test_an_oversized_credential_is_refused_before_its_signature(issuer: Issuer) -> None:
    big = b"\x84" + b"\x00" * (MAX_CREDENTIAL_SIZE + 1)
    with pytest.raises(InputTooLargeError):
        verify_device_bound(wrap(big), trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)
    with pytest.raises(InputTooLargeError):
        verify_compact_credential(big, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_any_text_gives_a_token_or_a_core_error(text: str) -> None:
    trust = _TRUST[0]
    for candidate in (text, SCHEME_PREFIX + text):
        with contextlib.suppress(CoreError):
            verify_device_bound(candidate, trust_list=trust, now=AT, leeway=LEEWAY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_token_or_a_core_error(data: bytes) -> None:
    trust = _TRUST[0]
    with contextlib.suppress(CoreError):
        verify_device_bound(
            SCHEME_PREFIX + b45encode(data), trust_list=trust, now=AT, leeway=LEEWAY
        )
    with contextlib.suppress(CoreError):
        verify_compact_credential(data, trust_list=trust, now=AT, leeway=LEEWAY)


_cbor = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers(-3, 9), inner,
                                                               max_size=6),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_cbor, _cbor)
def test_any_signed_structure_gives_a_token_or_a_core_error(payload: Any, claims: Any) -> None:
    """Well-signed garbage gets past both signatures' envelopes into the parsers."""
    trust, ecard = _TRUST
    from cardsvc.core.keys import short_kid

    cred = cose.sign1(cose.encode_cbor(claims), ecard, kid=short_kid(ecard.kid), tagged=False)
    for body in (payload, [cred, slot_of(AT), 1, 5], [cred, *([payload] * 3)]):
        with contextlib.suppress(CoreError):
            verify_device_bound(_wrapper_with(body), trust_list=trust, now=AT, leeway=LEEWAY)


def _make_trust() -> tuple[Any, Signer]:
    from tests.core.conftest import make_trust_list

    signers = {p: new_signer() for p in KeyPurpose if p is not KeyPurpose.ROOT}
    return make_trust_list(signers), signers[KeyPurpose.ECARD]


# Hypothesis does not mix with function-scoped fixtures; these tests make their own issuer.
_TRUST = _make_trust()


# -- the offline verifier -------------------------------------------------------------------


def gate(issuer: Issuer, **kw: Any) -> OfflineVerifier:
    v = OfflineVerifier(issuer.root.verifying_key(), **kw)
    v.update(bundle(issuer), now=NOW + timedelta(seconds=1))
    return v


def test_offline_verifier_accepts_once_per_slot_and_counter(issuer: Issuer) -> None:
    v = gate(issuer)
    text = qr(issuer)
    verdict = v.verify(text, purpose=Purpose.TRANSPORT, now=AT)
    assert verdict.outcome is Outcome.VALID and verdict.reason is None
    assert dict(verdict.claims) == OFFLINE[Purpose.TRANSPORT]
    assert verdict.expires_at == datetime.fromtimestamp((slot_of(AT) + 2) * SLOT_SECONDS, UTC)
    again = v.verify(text, purpose=Purpose.TRANSPORT, now=AT + timedelta(seconds=5))
    assert (again.outcome, again.reason) == (Outcome.INVALID, "replayed")
    # The next code the phone shows in the same slot has the next counter: accepted once.
    assert v.verify(qr(issuer, counter=2), purpose=Purpose.TRANSPORT, now=AT).valid
    # The same code a slot later: still within the skew, still a replay.
    later = v.verify(text, purpose=Purpose.TRANSPORT, now=AT + timedelta(seconds=SLOT_SECONDS))
    assert later.reason == "replayed"


@pytest.mark.parametrize(("idx", "reason"), [(REVOKED, "revoked"), (SUSPENDED, "suspended")])
def test_offline_verifier_takes_status_from_the_bundle(
    issuer: Issuer, idx: int, reason: str
) -> None:
    verdict = gate(issuer).verify(qr(issuer, status_idx=idx), purpose=Purpose.TRANSPORT, now=AT)
    assert (verdict.outcome, verdict.reason) == (Outcome.INVALID, reason)
    assert not verdict.claims


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: wrap(credential(i), device=new_signer()), "device-mismatch"),
        (lambda i: wrap(credential(i), slot=slot_of(AT) - 2), "slot"),
        (lambda i: qr(i, expires_at=AT - timedelta(minutes=1)), "expired"),
        (lambda i: qr(i, Purpose.IDENTITY), "purpose"),
        (lambda i: SCHEME_PREFIX + "not base45", "decode-error"),
    ],
)
def test_offline_verifier_names_each_refusal(issuer: Issuer, make: Any, reason: str) -> None:
    verdict = gate(issuer).verify(make(issuer), purpose=Purpose.TRANSPORT, now=AT)
    assert (verdict.outcome, verdict.reason) == (Outcome.INVALID, reason)


def test_offline_verifier_without_skew_and_with_a_stale_bundle(issuer: Issuer) -> None:
    strict = gate(issuer, skew_slots=0)
    late = wrap(credential(issuer), slot=slot_of(AT) - 1)
    assert strict.verify(late, purpose=Purpose.TRANSPORT, now=AT).reason == "slot"
    with pytest.raises(ValueError, match="skew_slots"):
        OfflineVerifier(issuer.root.verifying_key(), skew_slots=3)
    stale = gate(issuer, max_age=timedelta(minutes=1))
    verdict = stale.verify(qr(issuer), purpose=Purpose.TRANSPORT, now=AT)
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "stale-bundle")


def test_compact_credential_checks_itself_when_built() -> None:
    base = {
        "issuer": "https://issuer.test",
        "purpose": Purpose.TRANSPORT,
        "ecard_ref": b"\x05" * 8,
        "status_shard": 0,
        "status_idx": 1,
        "device_point": compressed_point(PHONE.verifying_key()),
        "expires_at": NOW,
        "attributes": {},
    }
    CompactCredential(**base)
    for bad in (
        {"ecard_ref": b"short"},
        {"status_idx": -1},
        {"attributes": {Attribute.NAME: "张三"}},
    ):
        with pytest.raises(DecodeError):
            CompactCredential(**{**base, **bad})
    assert replace(CompactCredential(**base), status_idx=2).status_idx == 2


def test_credential_claims_in_another_encoding_are_refused(issuer: Issuer) -> None:
    """Issue 15, part 4: the issuer-signed credential has one encoding (RFC 8949 4.2.1)."""
    ecard = issuer.signer(KeyPurpose.ECARD)
    from cardsvc.core.keys import short_kid

    claims = cose.decode_cbor(cose.decode_sign1(credential(issuer)).payload, what="x")
    assert isinstance(claims, dict)
    backwards = cbor2.dumps(dict(reversed(list(claims.items()))))
    cred = cose.sign1(backwards, ecard, kid=short_kid(ecard.kid), tagged=False)
    with pytest.raises(DecodeError, match="deterministic order"):
        verify_device_bound(wrap(cred), trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)


def test_wrapper_payload_in_another_encoding_is_refused(issuer: Issuer) -> None:
    body = cose.encode_cbor([credential(issuer), slot_of(AT), 1, int(Purpose.TRANSPORT)])
    assert body.endswith(b"\x01\x05")
    respelled = body[:-2] + b"\x18\x01\x05"  # counter 1 in two bytes
    assert cbor2.loads(respelled) == cbor2.loads(body) and respelled != body
    hint = device_hint(compressed_point(PHONE.verifying_key()))
    text = SCHEME_PREFIX + b45encode(cose.sign1(respelled, PHONE, kid=hint, tagged=False))
    with pytest.raises(DecodeError, match="deterministic"):
        verify_device_bound(text, trust_list=issuer.trust_list, now=AT, leeway=LEEWAY)

"""Generate signed test vectors into schemas/vectors/ with fixed test keys.

    .venv/bin/python schemas/generate_vectors.py [OUTPUT_DIR]

Keys are derived from fixed scalars and signatures are deterministic (RFC 6979), so the
output is byte-for-byte reproducible; the test suite regenerates it and compares. A
partner checks their own verifier against these files: each holds the input, the pinned
root key, the trust list, the time to verify at, and the expected outcome (the claims, or
the error class and the name of the failed check).

These keys are public. Never trust them outside tests.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.bundle import encode_bundle, verify_bundle
from cardsvc.core.carddoc import CARD_DOCUMENT_TYP, CardDocument, verify_card_document
from cardsvc.core.credential import CompactCredential, compressed_point, encode_compact_credential
from cardsvc.core.devicebound import device_hint, present, verify_device_bound
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode, Sex
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_decode, b64url_encode, short_kid
from cardsvc.core.qrtoken import (
    SCHEME_PREFIX,
    Attribute,
    Purpose,
    QrToken,
    encode_qr_token,
    verify_qr_token,
)
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import P256_ORDER, low_s, sign_jws
from cardsvc.core.sm2 import SM2SM3, Sm2PublicKey
from cardsvc.core.sm2 import N as SM2_ORDER
from cardsvc.core.statuslist import (
    Status,
    StatusList,
    encode_status_list_jwt,
    verify_status_list_token,
)
from cardsvc.core.statuspatch import Run, encode_entries, list_digest, make_patch
from cardsvc.core.trustlist import TrustedKey, TrustList

NOW = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
LEEWAY = timedelta(seconds=30)
ISSUER = "https://issuer.test"
STATUS_BASE = f"{ISSUER}/v1/status-lists"
VECTORS = Path(__file__).resolve().parent / "vectors"


@dataclass(frozen=True)
class FixedSigner:
    """A P-256 key from a fixed label, signing deterministically (RFC 6979)."""

    label: str

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        scalar = int.from_bytes(hashlib.sha256(f"cardsvc test key {self.label}".encode()).digest())
        return ec.derive_private_key(scalar % (2**255), ec.SECP256R1())

    @property
    def alg(self) -> str:
        return "ES256"

    @property
    def kid(self) -> str:
        return self.verifying_key().kid

    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(public_key=self.private_key.public_key())

    def sign(self, data: bytes) -> bytes:
        der = self.private_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return low_s(r.to_bytes(32) + s.to_bytes(32))


def _load_sm2_reference() -> Any:
    """schemas/sm2_reference.py, beside this file (this module may be loaded by path)."""
    path = Path(__file__).resolve().parent / "sm2_reference.py"
    spec = importlib.util.spec_from_file_location("sm2_reference", path)
    assert spec is not None and spec.loader is not None  # noqa: S101
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SM2_REFERENCE = _load_sm2_reference()


@dataclass(frozen=True)
class FixedSm2Signer:
    """An SM2 key from a fixed label; k derived from key and message (sm2_reference.py)."""

    label: str

    @property
    def scalar(self) -> int:
        digest = hashlib.sha256(f"cardsvc test key {self.label}".encode()).digest()
        return int.from_bytes(digest) % (SM2_ORDER - 2) + 1

    @property
    def alg(self) -> str:
        return SM2SM3

    @property
    def kid(self) -> str:
        return self.verifying_key().kid

    @functools.cached_property
    def _public(self) -> Sm2PublicKey:
        return Sm2PublicKey(*SM2_REFERENCE.public_point(self.scalar))

    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(public_key=self._public)

    def sign(self, data: bytes) -> bytes:
        return bytes(SM2_REFERENCE.sign(self.scalar, data))

    def sign_without_z(self, data: bytes) -> bytes:
        """The wrong signature: SM3(M) without Z (a must-fail vector)."""
        return bytes(SM2_REFERENCE.sign(self.scalar, data, with_z=False))


ROOT = FixedSigner("root")
SIGNERS = {
    KeyPurpose.CARD_DOCUMENT: FixedSigner("card-document"),
    KeyPurpose.ECARD: FixedSigner("ecard"),
    KeyPurpose.STATUS_LIST: FixedSigner("status-list"),
}
CHIP = FixedSigner("chip")
OUTSIDER = FixedSigner("not in the trust list")
DEVICE = FixedSigner("device")
OTHER_DEVICE = FixedSigner("another device")

TRUST_LIST = TrustList(
    issuer=ISSUER,
    sequence=1,
    issued_at=NOW - timedelta(hours=1),
    expires_at=NOW + timedelta(days=7),
    keys=tuple(
        TrustedKey(
            key=s.verifying_key(),
            purpose=p,
            not_before=NOW - timedelta(days=365),
            not_after=NOW + timedelta(days=3650),
        )
        for p, s in SIGNERS.items()
    ),
)
TRUST_LIST_TOKEN = TRUST_LIST.sign(ROOT)


def card_document() -> CardDocument:
    return CardDocument(
        issuer=ISSUER,
        card_number=CardNumber.parse("A00000001"),
        citizen_id=CitizenId.parse("11010519491231002X"),
        name="张三",
        sex=Sex.FEMALE,
        birth_date=date(1949, 12, 31),
        region=RegionCode.parse("110105"),
        issue_date=date(2024, 3, 1),
        expiry_date=date(2034, 3, 1),
        chip_key=CHIP.verifying_key(),
        status=StatusReference(idx=1234, uri=f"{STATUS_BASE}/0"),
        issued_at=NOW - timedelta(days=10),
    )


def qr_token(purpose: Purpose, attributes: dict[Attribute, Any], **kw: Any) -> QrToken:
    fields: dict[str, Any] = {
        "issuer": "cn-ssc",
        "purpose": purpose,
        "ecard_ref": bytes.fromhex("0102030405060708"),
        "jti": bytes.fromhex("a1a2a3a4a5a6a7a8"),
        "issued_at": NOW - timedelta(seconds=10),
        "expires_at": NOW + timedelta(seconds=50),
        "status_shard": 0,
        "status_idx": 4321,
        "attributes": attributes,
    }
    fields.update(kw)
    return QrToken(**fields)


IDENTITY = {
    Attribute.NAME: "张三",
    Attribute.ID_NO: "11010519491231002X",
    Attribute.PHOTO_REF: bytes(range(8)),
}
TRANSPORT = {Attribute.CONCESSION: 1, Attribute.CONCESSION_UNTIL: date(2030, 6, 30)}


def _forged_jws(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    part = lambda obj: b64url_encode(json.dumps(obj, separators=(",", ":")).encode())  # noqa: E731
    return f"{part(header)}.{part(claims)}.{b64url_encode(signature)}"


def status_list() -> StatusList:
    lst = StatusList.new(131_072, 2)
    lst.set(1234, Status.VALID)
    lst.set(7, Status.INVALID)
    lst.set(4321, Status.SUSPENDED)
    return lst


def status_token(**kw: Any) -> str:
    args: dict[str, Any] = {
        "sub": f"{STATUS_BASE}/0",
        "iat": NOW - timedelta(minutes=5),
        "exp": NOW + timedelta(hours=1),
        "ttl": 300,
        "signer": SIGNERS[KeyPurpose.STATUS_LIST],
    }
    args.update(kw)
    return encode_status_list_jwt(status_list(), **args)


def _card(**kw: Any) -> str:
    signer = kw.pop("signer", SIGNERS[KeyPurpose.CARD_DOCUMENT])
    return replace(card_document(), **kw).sign(signer)


def card_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    good = _card()
    h, p, _ = good.split(".")
    claims = card_document().to_claims()
    kid = SIGNERS[KeyPurpose.CARD_DOCUMENT].kid
    card_signer = SIGNERS[KeyPurpose.CARD_DOCUMENT]
    return {
        "valid": ("A valid card document", good, {}),
        "expired": (
            "Verified after the card's expiry day",
            good,
            {"now": int((NOW + timedelta(days=3000)).timestamp())},
        ),
        "bad-signature": (
            "The signature of another document",
            f"{h}.{p}.{_card(name='李四').split('.')[2]}",
            {},
        ),
        "alg-none": (
            "alg none with an empty signature",
            _forged_jws({"alg": "none", "typ": CARD_DOCUMENT_TYP, "kid": kid}, claims, b""),
            {},
        ),
        "wrong-purpose": ("Signed by the e-card key", _card(signer=SIGNERS[KeyPurpose.ECARD]), {}),
        "unknown-key": ("Signed by a key outside the trust list", _card(signer=OUTSIDER), {}),
        "wrong-typ": (
            "typ JWT instead of ssc-card+jwt",
            sign_jws({"typ": "JWT"}, claims, card_signer),
            {},
        ),
        "crit": (
            "A crit header",
            sign_jws({"typ": CARD_DOCUMENT_TYP, "crit": ["x"], "x": 1}, claims, card_signer),
            {},
        ),
        "missing-claim": (
            "No cnf claim",
            sign_jws(
                {"typ": CARD_DOCUMENT_TYP},
                {k: v for k, v in claims.items() if k != "cnf"},
                card_signer,
            ),
            {},
        ),
        "sex-mismatch": (
            "sex contradicts the citizen ID number",
            sign_jws({"typ": CARD_DOCUMENT_TYP}, {**claims, "sex": "M"}, card_signer),
            {},
        ),
    }


def _sign1_by_hand(protected: bytes, payload: bytes, signer: FixedSigner) -> bytes:
    """A tagged COSE_Sign1 over exactly these bytes, built with cbor2 rather than our encoder."""
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signer.sign(to_be_signed)]))


def _qr(message: bytes) -> str:
    return SCHEME_PREFIX + b45encode(message)


def encoding_profile_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Validly signed under RFC 9052, each refused by the encoding profile (verifying.md)."""
    ecard = SIGNERS[KeyPurpose.ECARD]
    kid = short_kid(ecard.kid)
    good = b45decode(encode_qr_token(qr_token(Purpose.TRANSPORT, TRANSPORT), ecard)[5:])
    payload = cose.encode_cbor(qr_token(Purpose.TRANSPORT, TRANSPORT).to_cbor_claims())
    if good[:3] != b"\xd2\x84\x4d":  # tag 18, array of 4, protected bstr of 13
        raise SystemExit("the transport token's layout changed: update these vectors")
    s = int.from_bytes(good[-32:])
    high_s = good[:-32] + (P256_ORDER - s).to_bytes(32)
    protected = {1: -7, 4: kid}
    claims = qr_token(Purpose.TRANSPORT, TRANSPORT).to_cbor_claims()
    backwards = dict(reversed(list(claims.items())))
    return {
        "protected-length-non-minimal": (
            "The protected header's bstr length in a needless extra byte (58 0d, not 4d)",
            _qr(b"\xd2\x84\x58\x0d" + good[3:]),
            {},
        ),
        "high-s": ("The same signature with s replaced by n - s (high-S)", _qr(high_s), {}),
        "crit": (
            "crit [4] in the protected header",
            _qr(_sign1_by_hand(cbor2.dumps({1: -7, 2: [4], 4: kid}), payload, ecard)),
            {},
        ),
        "unknown-header": (
            "Content type 61 (application/cwt) in the protected header",
            _qr(_sign1_by_hand(cbor2.dumps({**protected, 3: 61}, canonical=True), payload, ecard)),
            {},
        ),
        "claims-not-deterministic": (
            "CWT claims whose map keys are in reverse order",
            _qr(_sign1_by_hand(cose.encode_cbor(protected), cbor2.dumps(backwards), ecard)),
            {},
        ),
    }


def qr_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    ecard = SIGNERS[KeyPurpose.ECARD]
    identity = encode_qr_token(qr_token(Purpose.IDENTITY, IDENTITY), ecard)
    over = qr_token(Purpose.TRANSPORT, TRANSPORT).to_cbor_claims()
    over[-65537][4][int(Attribute.NAME)] = "张三"
    over_text = SCHEME_PREFIX + b45encode(
        cose.sign1(cose.encode_cbor(over), ecard, kid=short_kid(ecard.kid))
    )
    return {
        "identity-valid": ("An identity token", identity, {"purpose": "identity"}),
        "transport-valid": (
            "A transport token: no name, no ID number",
            encode_qr_token(qr_token(Purpose.TRANSPORT, TRANSPORT), ecard),
            {"purpose": "transport"},
        ),
        "expired": (
            "Verified 2 minutes after issue",
            identity,
            {"now": int((NOW + timedelta(minutes=2)).timestamp())},
        ),
        "wrong-purpose": (
            "An identity token shown to a transport gate",
            identity,
            {"purpose": "transport"},
        ),
        "over-disclosure": ("A transport token carrying the holder's name", over_text, {}),
        "wrong-purpose-key": (
            "Signed by the card-document key",
            encode_qr_token(
                qr_token(Purpose.IDENTITY, IDENTITY), SIGNERS[KeyPurpose.CARD_DOCUMENT]
            ),
            {},
        ),
        "bad-prefix": ("The EU certificate prefix", "HC1:" + identity[len(SCHEME_PREFIX) :], {}),
        **encoding_profile_vectors(),
    }


def status_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    good = status_token()
    return {
        "valid": (
            "A 131,072-entry 2-bit list: idx 7 revoked, 4321 suspended",
            good,
            {"sub": f"{STATUS_BASE}/0"},
        ),
        "expired": (
            "Verified after exp",
            good,
            {"now": int((NOW + timedelta(hours=2)).timestamp())},
        ),
        "wrong-sub": ("Served at another URI", good, {"sub": f"{STATUS_BASE}/1"}),
        "wrong-key": (
            "Signed by the e-card key",
            status_token(signer=SIGNERS[KeyPurpose.ECARD]),
            {},
        ),
        "wrong-typ": (
            "typ JWT",
            sign_jws(
                {"typ": "JWT"},
                {
                    "sub": f"{STATUS_BASE}/0",
                    "iat": 1,
                    "exp": 2,
                    "status_list": {"bits": 2, "lst": "eNoDAAAAAAE"},
                },
                SIGNERS[KeyPurpose.STATUS_LIST],
            ),
            {},
        ),
    }


def trust_list_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        "valid": ("The trust list every other vector uses", TRUST_LIST_TOKEN, {}),
        "expired": (
            "Verified after exp",
            TRUST_LIST_TOKEN,
            {"now": int((NOW + timedelta(days=8)).timestamp())},
        ),
        "wrong-root": (
            "Signed by a key that is not the pinned root",
            TRUST_LIST.sign(OUTSIDER),
            {},
        ),
    }


def compact_credential(purpose: Purpose, attributes: dict[Attribute, Any], **kw: Any) -> bytes:
    signer = kw.pop("signer", SIGNERS[KeyPurpose.ECARD])
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "purpose": purpose,
        "ecard_ref": bytes.fromhex("0102030405060708"),
        "status_shard": 0,
        "status_idx": 1234,
        "device_point": compressed_point(DEVICE.verifying_key()),
        "expires_at": NOW + timedelta(days=7),
        "attributes": attributes,
    }
    fields.update(kw)
    return encode_compact_credential(CompactCredential(**fields), signer)


#: An offline identity credential leaves the photo reference out (no use offline).
OFFLINE_IDENTITY = {k: v for k, v in IDENTITY.items() if k is not Attribute.PHOTO_REF}


def _wrap(credential: bytes, device: FixedSigner, purpose: Purpose, slot: int) -> str:
    """A wrapper built by hand (another phone, a forger): present() would refuse it."""
    hint = device_hint(compressed_point(device.verifying_key()))
    body = cose.encode_cbor([credential, slot, 0, int(purpose)])
    return "SSC2:" + b45encode(cose.sign1(body, device, kid=hint, tagged=False))


def device_bound_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    identity_cred = compact_credential(Purpose.IDENTITY, OFFLINE_IDENTITY)
    transport_cred = compact_credential(Purpose.TRANSPORT, TRANSPORT)
    identity = present(identity_cred, DEVICE, purpose=Purpose.IDENTITY, now=NOW, counter=0)
    transport = present(transport_cred, DEVICE, purpose=Purpose.TRANSPORT, now=NOW, counter=3)
    raw = bytearray(b45decode(transport[5:]))
    raw[-1] ^= 0x01
    slot = int(NOW.timestamp()) // 30

    def wrapped(**kw: Any) -> str:
        cred = compact_credential(Purpose.TRANSPORT, TRANSPORT, **kw)
        return present(cred, DEVICE, purpose=Purpose.TRANSPORT, now=NOW, counter=0)

    return {
        "identity-valid": (
            "An identity code made offline by the bound phone",
            identity,
            {"purpose": "identity"},
        ),
        "transport-valid": (
            "A transport code: no name, no ID number",
            transport,
            {"purpose": "transport"},
        ),
        "wrong-slot": (
            "Verified two slots (60 s) after the slot it was made for",
            transport,
            {"now": int((NOW + timedelta(seconds=60)).timestamp())},
        ),
        "another-device": (
            "The credential copied to another phone, which wraps it with its own key",
            _wrap(transport_cred, OTHER_DEVICE, Purpose.TRANSPORT, slot),
            {},
        ),
        "bad-device-signature": (
            "The last byte of the device signature flipped",
            "SSC2:" + b45encode(bytes(raw)),
            {},
        ),
        "expired-credential": (
            "A credential that expired the day before",
            wrapped(expires_at=NOW - timedelta(days=1)),
            {},
        ),
        "wrong-purpose": (
            "A transport code shown at an identity counter",
            transport,
            {"purpose": "identity"},
        ),
        "credential-wrong-key": (
            "Credential signed by the card-document key",
            wrapped(signer=SIGNERS[KeyPurpose.CARD_DOCUMENT]),
            {},
        ),
        "credential-unknown-key": (
            "Credential signed by a key outside the trust list",
            wrapped(signer=OUTSIDER),
            {},
        ),
        "bad-prefix": ("The SSC1 prefix on a device-bound code", "SSC1:" + transport[5:], {}),
    }


def bundle_token(
    version: int,
    *,
    base: int | None = None,
    signer: Any = None,
    patches: dict[str, dict[str, str]] | None = None,
) -> str:
    return encode_bundle(
        issuer=ISSUER,
        version=version,
        issued_at=NOW - timedelta(minutes=10) + timedelta(minutes=version),
        expires_at=NOW + timedelta(hours=1),
        base=base,
        trust_list=TRUST_LIST_TOKEN,
        status_lists={} if patches else {f"{STATUS_BASE}/0": status_token()},
        status_patches=patches,
        signer=signer or SIGNERS[KeyPurpose.STATUS_LIST],
    )


def patched_status_list() -> StatusList:
    """Shard 0 at version 2: 99 revoked, 4321 valid again, 200-203 suspended."""
    lst = status_list()
    lst.set(99, Status.INVALID)
    lst.set(4321, Status.VALID)
    for idx in range(200, 204):
        lst.set(idx, Status.SUSPENDED)
    return lst


def _patch(runs: list[Run], *, shard: int = 0) -> dict[str, dict[str, str]]:
    return {
        f"{STATUS_BASE}/{shard}": {
            "entries": b64url_encode(encode_entries(runs)),
            "sha256": b64url_encode(list_digest(patched_status_list())),
        }
    }


def bundle_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    full, newer = bundle_token(1), bundle_token(2)
    header, payload, signature = full.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["ver"] = 9
    tampered_payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    tampered = f"{header}.{tampered_payload}.{signature}"
    return {
        "valid-full": ("A full bundle: trust list and shard 0", full, {}),
        "valid-delta": (
            "A delta from version 1, applied on the bundle of version 1",
            bundle_token(2, base=1),
            {"previous": [full]},
        ),
        "tampered": ("The version changed after signing", tampered, {}),
        "truncated": ("Cut in the middle of the download", full[: len(full) // 2], {}),
        "rolled-back": (
            "Version 1 offered to a verifier holding version 2",
            full,
            {"previous": [newer]},
        ),
        "foreign-key": (
            "Signed by a key outside the trust list",
            bundle_token(1, signer=OUTSIDER),
            {},
        ),
        "valid-entry-delta": (
            "A delta from version 1 carrying shard 0 as entry patches: 99 revoked, 4321 "
            "valid again, 200-203 suspended; the result's SHA-256 is in the patch",
            bundle_token(
                2,
                base=1,
                patches={f"{STATUS_BASE}/0": make_patch(status_list(), patched_status_list())},
            ),
            {"previous": [full]},
        ),
        "patch-digest": (
            "An entry patch whose result is not the list its sha256 names (4321 left out)",
            bundle_token(
                2,
                base=1,
                patches=_patch([Run(99, 1, Status.INVALID), Run(200, 4, Status.SUSPENDED)]),
            ),
            {"previous": [full]},
        ),
        "patch-index": (
            "An entry patch whose last run reaches past the 131,072 entries of shard 0",
            bundle_token(2, base=1, patches=_patch([Run(131_070, 3, Status.INVALID)])),
            {"previous": [full]},
        ),
        "patch-status": (
            "An entry patch setting status 5, which 2 bits cannot hold",
            bundle_token(2, base=1, patches=_patch([Run(99, 1, 5)])),
            {"previous": [full]},
        ),
        "patch-base": (
            "An entry patch for shard 1, which the held bundle of version 1 does not have",
            bundle_token(2, base=1, patches=_patch([Run(99, 1, Status.INVALID)], shard=1)),
            {"previous": [full]},
        ),
    }


# --- The SM2-with-SM3 suite (docs/sm2.md): vectors under vectors/sm2/ ---------------------

SM2_ROOT = FixedSm2Signer("sm2 root")
SM2_SIGNERS = {p: FixedSm2Signer(f"sm2 {p.value}") for p in SIGNERS}
SM2_CHIP = FixedSm2Signer("sm2 chip")
#: One trust list holding both suites: the ES256 keys above and an SM2 key per purpose.
SM2_TRUST_LIST = replace(
    TRUST_LIST,
    keys=TRUST_LIST.keys
    + tuple(
        TrustedKey(
            key=s.verifying_key(),
            purpose=p,
            not_before=NOW - timedelta(days=365),
            not_after=NOW + timedelta(days=3650),
        )
        for p, s in SM2_SIGNERS.items()
    ),
)
SM2_TRUST_LIST_TOKEN = SM2_TRUST_LIST.sign(SM2_ROOT)
SM2_CONTEXT = {"root_jwk": SM2_ROOT.verifying_key().jwk(), "trust_list": SM2_TRUST_LIST_TOKEN}


def _jws_by_hand(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    part = lambda obj: b64url_encode(  # noqa: E731
        json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    )
    signing_input = f"{part(header)}.{part(claims)}"
    return f"{signing_input}.{b64url_encode(sign(signing_input.encode('ascii')))}"


def sm2_trust_list_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    claims = SM2_TRUST_LIST.to_claims()
    header = {"typ": "trustlist+jwt", "alg": SM2SM3, "kid": SM2_ROOT.kid}
    return {
        "sm2-valid": (
            "A trust list signed by an SM2 root, holding ES256 and SM2 keys at once",
            SM2_TRUST_LIST_TOKEN,
            SM2_CONTEXT,
        ),
        "sm2-without-z": (
            "Signed by the SM2 root over SM3(M), without Z",
            _jws_by_hand(header, claims, SM2_ROOT.sign_without_z),
            SM2_CONTEXT,
        ),
    }


def sm2_card_document() -> CardDocument:
    return replace(card_document(), chip_key=SM2_CHIP.verifying_key())


def sm2_card_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    sm2_signer = SM2_SIGNERS[KeyPurpose.CARD_DOCUMENT]
    es_signer = SIGNERS[KeyPurpose.CARD_DOCUMENT]
    claims = sm2_card_document().to_claims()
    good = sm2_card_document().sign(sm2_signer)
    h, p, _ = good.split(".")
    other = replace(sm2_card_document(), name="李四").sign(sm2_signer)
    typ = CARD_DOCUMENT_TYP
    return {
        "sm2-valid": (
            "A card document signed with SM2 (alg SM2SM3), its chip key an SM2 key",
            good,
            SM2_CONTEXT,
        ),
        "sm2-bad-signature": (
            "The SM2 signature of another document",
            f"{h}.{p}.{other.split('.')[2]}",
            SM2_CONTEXT,
        ),
        "sm2-without-z": (
            "SM2 over SM3(M) without Z, by the right key",
            _jws_by_hand({"typ": typ, "alg": SM2SM3, "kid": sm2_signer.kid}, claims,
                         sm2_signer.sign_without_z),
            SM2_CONTEXT,
        ),
        "sm2-labelled-es256": (
            "The SM2 key's kid with header alg ES256 (an SM2 key used for an ES256 token)",
            _jws_by_hand({"typ": typ, "alg": "ES256", "kid": sm2_signer.kid}, claims,
                         sm2_signer.sign),
            SM2_CONTEXT,
        ),
        "sm2-under-es256-key": (
            "An SM2 signature under the ES256 key's kid, header alg ES256",
            _jws_by_hand({"typ": typ, "alg": "ES256", "kid": es_signer.kid}, claims,
                         sm2_signer.sign),
            SM2_CONTEXT,
        ),
        "es256-under-sm2-key": (
            "An ES256 signature under the SM2 key's kid, header alg SM2SM3",
            _jws_by_hand({"typ": typ, "alg": SM2SM3, "kid": sm2_signer.kid}, claims,
                         es_signer.sign),
            SM2_CONTEXT,
        ),
    }


def sm2_qr_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    ecard = SM2_SIGNERS[KeyPurpose.ECARD]
    kid = short_kid(ecard.kid)
    es_kid = short_kid(SIGNERS[KeyPurpose.ECARD].kid)
    identity = encode_qr_token(qr_token(Purpose.IDENTITY, IDENTITY), ecard)
    payload = cose.encode_cbor(qr_token(Purpose.TRANSPORT, TRANSPORT).to_cbor_claims())
    good = b45decode(encode_qr_token(qr_token(Purpose.TRANSPORT, TRANSPORT), ecard)[5:])
    s = int.from_bytes(good[-32:])
    twin = good[:-32] + (SM2_ORDER - s).to_bytes(32)

    def by_hand(protected: dict[int, Any], sign: Callable[[bytes], bytes]) -> str:
        protected_bytes = cose.encode_cbor(protected)
        to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
        parts = [protected_bytes, {}, payload, sign(to_be_signed)]
        return _qr(cbor2.dumps(cbor2.CBORTag(18, parts)))

    return {
        "sm2-identity-valid": ("An identity token signed with SM2 (COSE alg -66037)", identity,
                               {**SM2_CONTEXT, "purpose": "identity"}),
        "sm2-transport-valid": (
            "A transport token signed with SM2",
            encode_qr_token(qr_token(Purpose.TRANSPORT, TRANSPORT), ecard),
            {**SM2_CONTEXT, "purpose": "transport"},
        ),
        "sm2-without-z": (
            "SM2 over SM3(M) without Z, by the right key",
            by_hand({1: cose.ALG_SM2SM3, 4: kid}, ecard.sign_without_z),
            SM2_CONTEXT,
        ),
        "sm2-labelled-es256": (
            "An SM2 signature by the SM2 key, protected alg -7 (ES256)",
            by_hand({1: cose.ALG_ES256, 4: kid}, ecard.sign),
            SM2_CONTEXT,
        ),
        "sm2-under-es256-key": (
            "An SM2 signature, alg -66037, under the ES256 key's kid",
            by_hand({1: cose.ALG_SM2SM3, 4: es_kid}, ecard.sign),
            SM2_CONTEXT,
        ),
        "sm2-s-twin": (
            "The valid transport token with s replaced by n - s: no second form in SM2",
            _qr(twin),
            SM2_CONTEXT,
        ),
    }


def sm2_status_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        "sm2-valid": (
            "A status list token signed with SM2",
            status_token(signer=SM2_SIGNERS[KeyPurpose.STATUS_LIST]),
            {**SM2_CONTEXT, "sub": f"{STATUS_BASE}/0"},
        ),
        "sm2-wrong-key": (
            "Signed by the SM2 e-card key",
            status_token(signer=SM2_SIGNERS[KeyPurpose.ECARD]),
            SM2_CONTEXT,
        ),
    }


def sm2_device_bound_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    credential = compact_credential(
        Purpose.IDENTITY, OFFLINE_IDENTITY, signer=SM2_SIGNERS[KeyPurpose.ECARD]
    )
    return {
        "sm2-identity-valid": (
            "A device-bound code whose credential is signed with SM2 (the phone's key: ES256)",
            present(credential, DEVICE, purpose=Purpose.IDENTITY, now=NOW, counter=0),
            {**SM2_CONTEXT, "purpose": "identity"},
        ),
    }


def sm2_bundle_vectors() -> dict[str, tuple[str, str, dict[str, Any]]]:
    signer = SM2_SIGNERS[KeyPurpose.STATUS_LIST]
    bundle = encode_bundle(
        issuer=ISSUER,
        version=1,
        issued_at=NOW - timedelta(minutes=9),
        expires_at=NOW + timedelta(hours=1),
        base=None,
        trust_list=SM2_TRUST_LIST_TOKEN,
        status_lists={f"{STATUS_BASE}/0": status_token(signer=signer)},
        status_patches=None,
        signer=signer,
    )
    return {
        "sm2-valid-full": ("A full bundle signed with SM2: the two-suite trust list, shard 0",
                           bundle, SM2_CONTEXT),
    }



def verify_vector(kind: str, vector: dict[str, Any]) -> dict[str, Any]:
    """Run the code on one vector; returns its observed outcome in the vector's format."""
    now = datetime.fromtimestamp(vector["now"], UTC)
    leeway = timedelta(seconds=vector["leeway"])
    root = VerifyingKey.from_jwk(vector["root_jwk"])
    trust_list = TrustList.verify(vector["trust_list"], root=root, now=NOW, leeway=LEEWAY)
    verify: Callable[[], dict[str, Any]]
    if kind == "trust-list":

        def verify() -> dict[str, Any]:
            return TrustList.verify(vector["input"], root=root, now=now, leeway=leeway).to_claims()
    elif kind == "card-document":

        def verify() -> dict[str, Any]:
            return verify_card_document(
                vector["input"], trust_list=trust_list, now=now, leeway=leeway
            ).to_claims()
    elif kind == "qr-token":
        purpose = vector.get("purpose")

        def verify() -> dict[str, Any]:
            return verify_qr_token(
                vector["input"],
                trust_list=trust_list,
                now=now,
                leeway=leeway,
                purpose=Purpose[purpose.upper()] if purpose else None,
            ).to_json(status_base_uri=STATUS_BASE)
    elif kind == "status-list":

        def verify() -> dict[str, Any]:
            token = verify_status_list_token(
                vector["input"],
                trust_list=trust_list,
                expected_sub=vector.get("sub"),
                now=now,
                leeway=leeway,
            )
            lst = token.status_list
            return {
                "sub": token.sub,
                "bits": lst.bits,
                "size": len(lst),
                "nonzero": {str(i): lst.get(i) for i in (7, 1234, 4321)},
            }
    elif kind == "device-bound":
        gate = vector.get("purpose")

        def verify() -> dict[str, Any]:
            return verify_device_bound(
                vector["input"],
                trust_list=trust_list,
                now=now,
                leeway=leeway,
                purpose=Purpose[gate.upper()] if gate else None,
            ).to_json(status_base_uri=STATUS_BASE)
    elif kind == "bundle":

        def verify() -> dict[str, Any]:
            held = None
            for token in vector.get("previous", []):
                held = verify_bundle(token, root=root, now=now, leeway=leeway, previous=held)
            bundle = verify_bundle(
                vector["input"], root=root, now=now, leeway=leeway, previous=held
            )
            return bundle.to_json()
    else:
        raise ValueError(kind)
    try:
        return {"valid": True, "result": verify()}
    except VerificationError as exc:
        return {"valid": False, "error": type(exc).__name__, "check": exc.check}
    except CoreError as exc:
        return {"valid": False, "error": type(exc).__name__}


#: What each vector must do, stated independently of the code that verifies it.
INTENT: dict[str, str] = {
    "trust-list/valid": "valid",
    "trust-list/expired": "expired",
    "trust-list/wrong-root": "key-unknown",
    "card-document/valid": "valid",
    "card-document/expired": "expired",
    "card-document/bad-signature": "signature",
    "card-document/alg-none": "algorithm",
    "card-document/wrong-purpose": "key-purpose",
    "card-document/unknown-key": "key-unknown",
    "card-document/wrong-typ": "typ",
    "card-document/crit": "crit",
    "card-document/missing-claim": "claims",
    "card-document/sex-mismatch": "claims",
    "qr-token/identity-valid": "valid",
    "qr-token/transport-valid": "valid",
    "qr-token/expired": "expired",
    "qr-token/wrong-purpose": "purpose",
    "qr-token/over-disclosure": "claims",
    "qr-token/wrong-purpose-key": "key-purpose",
    "qr-token/bad-prefix": "DecodeError",
    "qr-token/protected-length-non-minimal": "DecodeError",
    "qr-token/high-s": "signature",
    "qr-token/crit": "crit",
    "qr-token/unknown-header": "header",
    "qr-token/claims-not-deterministic": "DecodeError",
    "status-list/valid": "valid",
    "status-list/expired": "expired",
    "status-list/wrong-sub": "sub",
    "status-list/wrong-key": "key-purpose",
    "status-list/wrong-typ": "typ",
    "device-bound/identity-valid": "valid",
    "device-bound/transport-valid": "valid",
    "device-bound/wrong-slot": "slot",
    "device-bound/another-device": "device-mismatch",
    "device-bound/bad-device-signature": "device-signature",
    "device-bound/expired-credential": "expired",
    "device-bound/wrong-purpose": "purpose",
    "device-bound/credential-wrong-key": "key-purpose",
    "device-bound/credential-unknown-key": "key-unknown",
    "device-bound/bad-prefix": "DecodeError",
    "bundle/valid-full": "valid",
    "bundle/valid-delta": "valid",
    "bundle/tampered": "signature",
    "bundle/truncated": "DecodeError",
    "bundle/rolled-back": "bundle-rollback",
    "bundle/foreign-key": "key-unknown",
    "bundle/valid-entry-delta": "valid",
    "bundle/patch-digest": "patch-digest",
    "bundle/patch-index": "patch-index",
    "bundle/patch-status": "patch-status",
    "bundle/patch-base": "patch-base",
    "trust-list/sm2-valid": "valid",
    "trust-list/sm2-without-z": "signature",
    "card-document/sm2-valid": "valid",
    "card-document/sm2-bad-signature": "signature",
    "card-document/sm2-without-z": "signature",
    "card-document/sm2-labelled-es256": "algorithm",
    "card-document/sm2-under-es256-key": "signature",
    "card-document/es256-under-sm2-key": "signature",
    "qr-token/sm2-identity-valid": "valid",
    "qr-token/sm2-transport-valid": "valid",
    "qr-token/sm2-without-z": "signature",
    "qr-token/sm2-labelled-es256": "algorithm",
    "qr-token/sm2-under-es256-key": "algorithm",
    "qr-token/sm2-s-twin": "signature",
    "status-list/sm2-valid": "valid",
    "status-list/sm2-wrong-key": "key-purpose",
    "device-bound/sm2-identity-valid": "valid",
    "bundle/sm2-valid-full": "valid",
}


def _outcome(expected: dict[str, Any]) -> str:
    if expected["valid"]:
        return "valid"
    return str(expected.get("check") or expected["error"])


def build() -> dict[str, dict[str, Any]]:
    groups = {
        "trust-list": trust_list_vectors(),
        "card-document": card_vectors(),
        "qr-token": qr_vectors(),
        "status-list": status_vectors(),
        "device-bound": device_bound_vectors(),
        "bundle": bundle_vectors(),
    }
    sm2_groups = {
        "trust-list": sm2_trust_list_vectors(),
        "card-document": sm2_card_vectors(),
        "qr-token": sm2_qr_vectors(),
        "status-list": sm2_status_vectors(),
        "device-bound": sm2_device_bound_vectors(),
        "bundle": sm2_bundle_vectors(),
    }
    out: dict[str, dict[str, Any]] = {}
    entries = [("", kind, vectors) for kind, vectors in groups.items()]
    entries += [("sm2/", kind, vectors) for kind, vectors in sm2_groups.items()]
    for folder, kind, vectors in entries:
        for name, (description, text, extra) in vectors.items():
            vector: dict[str, Any] = {
                "description": description,
                "kind": kind,
                "input": text,
                "now": int(NOW.timestamp()),
                "leeway": int(LEEWAY.total_seconds()),
                "root_jwk": ROOT.verifying_key().jwk(),
                "trust_list": TRUST_LIST_TOKEN,
                **extra,
            }
            vector["expected"] = verify_vector(kind, vector)
            intent = INTENT[f"{kind}/{name}"]
            if _outcome(vector["expected"]) != intent:
                raise SystemExit(
                    f"{kind}/{name}: expected {intent}, code says {vector['expected']}"
                )
            out[f"{folder}{kind}/{name}.json"] = vector
    return out


def write(directory: Path) -> list[Path]:
    written = []
    for name, vector in build().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else VECTORS
    for path in write(target):
        print(path)

"""The offline verifier: verdicts, freshness, clock rollback, and bundles it refuses."""

from __future__ import annotations

import json
import secrets
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.errors import VerificationError
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import Attribute, Purpose, QrToken, encode_qr_token
from cardsvc.core.signing import Signer
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from cardsvc.core.verifier import STATE_FILE, OfflineVerifier, Outcome, Verdict
from tests.core.conftest import NOW, Issuer, new_signer

BASE = "https://issuer.test/v1/status-lists"
TRANSPORT = {Attribute.CONCESSION: 1, Attribute.CONCESSION_UNTIL: date(2030, 6, 30)}
IDENTITY = {
    Attribute.NAME: "欧阳娜娜",
    Attribute.ID_NO: "11010519491231002X",
    Attribute.PHOTO_REF: bytes(range(8)),
}
REVOKED, SUSPENDED, GOOD = 7, 8, 9
AT = NOW + timedelta(minutes=5)  # when the tests scan


def status_jwt(issuer: Issuer, shard: int, *, revoked: tuple[int, ...] = (REVOKED,)) -> str:
    lst = StatusList.new(1024)
    for i in revoked:
        lst.set(i, Status.INVALID)
    lst.set(SUSPENDED, Status.SUSPENDED)
    return encode_status_list_jwt(
        lst,
        sub=f"{BASE}/{shard}",
        iat=NOW,
        exp=NOW + timedelta(days=2),
        ttl=3600,
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )


def bundle(
    issuer: Issuer,
    *,
    version: int = 1,
    base: int | None = None,
    shards: dict[str, str] | None = None,
    signer: Signer | None = None,
    iat: timedelta = timedelta(0),
) -> str:
    return encode_bundle(
        issuer="https://issuer.test",
        version=version,
        issued_at=NOW + iat,
        expires_at=NOW + iat + timedelta(days=2),
        base=base,
        trust_list=issuer.trust_list.sign(issuer.root),
        status_lists=shards if shards is not None else {f"{BASE}/0": status_jwt(issuer, 0)},
        signer=signer or issuer.signer(KeyPurpose.STATUS_LIST),
    )


def qr(issuer: Issuer, purpose: Purpose = Purpose.TRANSPORT, **kw: Any) -> str:
    fields: dict[str, Any] = {
        "issuer": "cn-ssc",
        "purpose": purpose,
        "ecard_ref": b"\x01" * 8,
        "jti": secrets.token_bytes(8),
        "issued_at": AT - timedelta(seconds=10),
        "expires_at": AT + timedelta(seconds=50),
        "status_shard": 0,
        "status_idx": GOOD,
        "attributes": TRANSPORT if purpose is Purpose.TRANSPORT else IDENTITY,
    }
    fields.update(kw)
    return encode_qr_token(QrToken(**fields), issuer.signer(KeyPurpose.ECARD))


def verifier(issuer: Issuer, state_dir: Path | None = None, **kw: Any) -> OfflineVerifier:
    v = OfflineVerifier(issuer.root.verifying_key(), state_dir=state_dir, **kw)
    v.update(bundle(issuer), now=NOW + timedelta(seconds=1))
    return v


def scan(v: OfflineVerifier, text: str, purpose: Purpose = Purpose.TRANSPORT) -> Verdict:
    return v.verify(text, purpose=purpose, now=AT)


def test_valid_token_discloses_only_its_purposes_claims(issuer: Issuer) -> None:
    verdict = scan(verifier(issuer), qr(issuer))
    assert verdict.outcome is Outcome.VALID and verdict.reason is None
    assert dict(verdict.claims) == TRANSPORT
    assert verdict.bundle_version == 1
    assert verdict.bundle_age == AT - NOW
    view = verdict.to_json()
    assert view["verdict"] == "valid" and view["bundle"] == {"version": 1, "age_seconds": 300}
    assert view["claims"] == {"concession": 1, "concession_until": "2030-06-30"}
    assert "ecard" not in json.dumps(view) and "jti" not in json.dumps(view)


@pytest.mark.parametrize(
    ("make", "purpose", "reason"),
    [
        (lambda i: qr(i, Purpose.IDENTITY), Purpose.TRANSPORT, "purpose"),
        (
            lambda i: qr(
                i, issued_at=AT - timedelta(seconds=90), expires_at=AT - timedelta(seconds=30)
            ),
            Purpose.TRANSPORT,
            "expired",
        ),
        (
            lambda i: qr(
                i, issued_at=AT + timedelta(minutes=5), expires_at=AT + timedelta(minutes=6)
            ),
            Purpose.TRANSPORT,
            "issued-in-future",
        ),
        (lambda i: qr(i, status_idx=REVOKED), Purpose.TRANSPORT, "revoked"),
        (lambda i: qr(i, status_idx=SUSPENDED), Purpose.TRANSPORT, "suspended"),
        (lambda i: "SSC1:" + "A" * 40, Purpose.TRANSPORT, "decode-error"),
        (lambda i: "HC1:6BFOXN", Purpose.TRANSPORT, "decode-error"),
        (lambda i: "", Purpose.TRANSPORT, "decode-error"),
        (lambda i: "SSC1:" + "0" * 5000, Purpose.TRANSPORT, "input-too-large"),
    ],
    ids=[
        "wrong-purpose",
        "expired",
        "future",
        "revoked",
        "suspended",
        "garbage",
        "prefix",
        "empty",
        "huge",
    ],
)
def test_invalid_tokens_name_their_reason(
    issuer: Issuer, make: Any, purpose: Purpose, reason: str
) -> None:
    verdict = scan(verifier(issuer), make(issuer), purpose)
    assert (verdict.outcome, verdict.reason) == (Outcome.INVALID, reason)
    assert not verdict.claims


def test_forged_token_signed_by_an_unlisted_key(issuer: Issuer) -> None:
    token = QrToken(
        issuer="cn-ssc",
        purpose=Purpose.TRANSPORT,
        ecard_ref=b"\x01" * 8,
        jti=secrets.token_bytes(8),
        issued_at=AT,
        expires_at=AT + timedelta(seconds=60),
        status_shard=0,
        status_idx=GOOD,
        attributes=TRANSPORT,
    )
    verdict = scan(verifier(issuer), encode_qr_token(token, new_signer()))
    assert (verdict.outcome, verdict.reason) == (Outcome.INVALID, "key-unknown")


def test_tampered_signature(issuer: Issuer) -> None:
    text = qr(issuer)
    flipped = text[:-3] + ("0" if text[-3] != "0" else "1") + text[-2:]
    verdict = scan(verifier(issuer), flipped)
    assert verdict.outcome is Outcome.INVALID
    assert verdict.reason in {"signature", "decode-error"}


def test_replayed_token_is_refused_the_second_time(issuer: Issuer) -> None:
    v = verifier(issuer)
    text = qr(issuer)
    assert scan(v, text).valid
    second = scan(v, text)
    assert (second.outcome, second.reason) == (Outcome.INVALID, "replayed")


def test_seen_set_stays_bounded(issuer: Issuer) -> None:
    v = verifier(issuer, seen_capacity=3)
    for _ in range(4):
        assert scan(v, qr(issuer)).valid
    assert len(v._seen) == 3
    # Full of live entries, one was dropped: codes made before now are not vouched for
    # (tests/core/test_verifier_state.py has the rest).
    assert scan(v, qr(issuer)).reason == "replay-unknown"
    assert len(v._seen) == 3


def test_no_bundle_means_status_unknown(issuer: Issuer) -> None:
    v = OfflineVerifier(issuer.root.verifying_key())
    verdict = scan(v, qr(issuer))
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "no-bundle")
    assert v.bundle_age(AT) is None


def test_stale_bundle_gives_status_unknown_not_valid(issuer: Issuer) -> None:
    v = verifier(issuer, max_age=timedelta(minutes=2))
    verdict = scan(v, qr(issuer))
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "stale-bundle")
    assert "5 min old" in (verdict.detail or "")
    assert dict(verdict.claims) == TRANSPORT
    assert v.bundle_age(AT) == timedelta(minutes=5)


def test_a_bad_token_is_invalid_even_with_a_stale_bundle(
    issuer: Issuer,
) -> None:
    v = verifier(issuer, max_age=timedelta(minutes=2))
    verdict = scan(v, qr(issuer, Purpose.IDENTITY))
    assert (verdict.outcome, verdict.reason) == (Outcome.INVALID, "purpose")


def test_unknown_shard_is_status_unknown(issuer: Issuer) -> None:
    verdict = scan(verifier(issuer), qr(issuer, status_shard=4))
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "status-missing")


def test_index_beyond_the_list_is_status_unknown(issuer: Issuer) -> None:
    verdict = scan(verifier(issuer), qr(issuer, status_idx=5000))
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "status-missing")


def test_explicit_status_base_uri(issuer: Issuer) -> None:
    assert scan(verifier(issuer, status_base_uri=BASE + "/"), qr(issuer)).valid
    other = scan(verifier(issuer, status_base_uri="https://elsewhere.test"), qr(issuer))
    assert other.reason == "status-missing"


def test_clock_rollback_is_refused_and_said(issuer: Issuer) -> None:
    v = verifier(issuer)
    assert v.newest_signed_time == NOW
    early = v.verify(qr(issuer), purpose=Purpose.TRANSPORT, now=NOW - timedelta(hours=1))
    assert (early.outcome, early.reason) == (Outcome.STATUS_UNKNOWN, "clock-rollback")
    assert "fix the clock" in (early.detail or "")
    with pytest.raises(VerificationError) as info:
        v.update(bundle(issuer, version=2), now=NOW - timedelta(hours=1))
    assert info.value.check == "clock-rollback"


def test_clock_rollback_survives_a_restart(issuer: Issuer, tmp_path: Path) -> None:
    verifier(issuer, tmp_path).update(
        bundle(issuer, version=2, iat=timedelta(hours=1)), now=NOW + timedelta(hours=1)
    )
    again = OfflineVerifier(issuer.root.verifying_key(), state_dir=tmp_path)
    assert again.newest_signed_time == NOW + timedelta(hours=1)
    assert scan(again, qr(issuer)).reason == "clock-rollback"


def test_bundle_persists_and_reloads(issuer: Issuer, tmp_path: Path) -> None:
    verifier(issuer, tmp_path)
    again = OfflineVerifier(issuer.root.verifying_key(), state_dir=tmp_path)
    assert again.bundle is not None and again.bundle.version == 1
    assert scan(again, qr(issuer)).valid


def test_delta_chain_persists(issuer: Issuer, tmp_path: Path) -> None:
    v = verifier(issuer, tmp_path)
    changed = {f"{BASE}/0": status_jwt(issuer, 0, revoked=(REVOKED, GOOD))}
    v.update(bundle(issuer, version=2, base=1, shards=changed), now=AT)
    assert scan(v, qr(issuer)).reason == "revoked"
    again = OfflineVerifier(issuer.root.verifying_key(), state_dir=tmp_path)
    assert again.bundle is not None and again.bundle.version == 2
    assert scan(again, qr(issuer)).reason == "revoked"


def _bad_bundles(issuer: Issuer) -> dict[str, tuple[str, str]]:
    good = bundle(issuer, version=3, iat=timedelta(seconds=30))
    head, _payload, sig = good.split(".")
    other = bundle(issuer, version=3, iat=timedelta(seconds=31)).split(".")[1]
    return {
        "rolled-back": (bundle(issuer, version=0), "bundle-rollback"),
        "tampered": (f"{head}.{other}.{sig}", "signature"),
        "foreign-key": (bundle(issuer, version=3, signer=new_signer()), "key-unknown"),
        "wrong-purpose-key": (
            bundle(issuer, version=3, signer=issuer.signer(KeyPurpose.ECARD)),
            "key-purpose",
        ),
        "bad-base": (bundle(issuer, version=3, base=1, iat=timedelta(seconds=30)), "bundle-base"),
        "truncated": (good[: len(good) // 2], "decode-error"),
    }


@pytest.mark.parametrize(
    "name", ["rolled-back", "tampered", "foreign-key", "wrong-purpose-key", "bad-base", "truncated"]
)
def test_bad_bundles_are_refused_and_the_previous_kept(
    issuer: Issuer, tmp_path: Path, name: str
) -> None:
    v = verifier(issuer, tmp_path)
    v.update(bundle(issuer, version=2, iat=timedelta(seconds=10)), now=AT)
    state = (tmp_path / STATE_FILE).read_bytes()
    token, reason = _bad_bundles(issuer)[name]
    with pytest.raises(Exception) as info:
        v.update(token, now=AT)
    assert getattr(info.value, "check", getattr(info.value, "code", None)) == reason
    assert v.bundle is not None and v.bundle.version == 2
    assert (tmp_path / STATE_FILE).read_bytes() == state
    assert scan(v, qr(issuer)).valid


def test_tampered_state_file_is_refused_on_load(issuer: Issuer, tmp_path: Path) -> None:
    verifier(issuer, tmp_path)
    path = tmp_path / STATE_FILE
    state = json.loads(path.read_text())
    token = state["chain"][0]["token"]
    state["chain"][0]["token"] = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    path.write_text(json.dumps(state))
    with pytest.raises(VerificationError):
        OfflineVerifier(issuer.root.verifying_key(), state_dir=tmp_path)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_random_text_gets_a_verdict_never_an_exception(issuer: Issuer, text: str) -> None:
    verdict = _SHARED.setdefault("v", verifier(issuer)).verify(
        text, purpose=Purpose.TRANSPORT, now=AT
    )
    assert verdict.outcome is Outcome.INVALID and verdict.reason


_SHARED: dict[str, OfflineVerifier] = {}


def test_docs_walkthrough_matches_the_vector() -> None:
    from cardsvc.core.base45 import b45decode

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "verifying.md").read_text()
    vector = json.loads((root / "schemas/vectors/qr-token/transport-valid.json").read_text())
    assert vector["input"] in doc
    raw = b45decode(vector["input"][len("SSC1:") :]).hex()
    shown = doc.split("The result is 148 bytes:\n\n```\n", 1)[1].split("```", 1)[0]
    assert shown.replace("\n", "") == raw

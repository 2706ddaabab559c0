"""What a gate's verifier keeps across restarts: replay memory, and delta chains."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.core.bundle import StatusPatchError, encode_bundle
from cardsvc.core.errors import VerificationError
from cardsvc.core.keys import KeyPurpose, b64url_encode
from cardsvc.core.qrtoken import Purpose
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from cardsvc.core.statuspatch import Run, encode_entries, list_digest, make_patch
from cardsvc.core.verifier import REPLAY_FILE, STATE_FILE, OfflineVerifier, Outcome, Verdict
from tests.core import test_devicebound as db
from tests.core.conftest import NOW, Issuer
from tests.core.test_verifier import AT, BASE, GOOD, REVOKED, bundle, qr, status_jwt


def restart(issuer: Issuer, state_dir: Path, *, at: datetime = AT, **kw: Any) -> OfflineVerifier:
    """A new verifier on ``state_dir``: what a gate is after a reboot (clock at ``at``)."""
    return OfflineVerifier(issuer.root.verifying_key(), state_dir=state_dir, clock=lambda: at, **kw)


def first_start(issuer: Issuer, state_dir: Path, *, at: datetime = AT) -> OfflineVerifier:
    v = restart(issuer, state_dir, at=at)
    v.update(bundle(issuer), now=NOW + timedelta(seconds=1))
    return v


def scan(v: OfflineVerifier, text: str, at: datetime = AT) -> Verdict:
    return v.verify(text, purpose=Purpose.TRANSPORT, now=at)


# -- replay memory ------------------------------------------------------------------------


def test_a_replay_after_a_restart_is_refused(issuer: Issuer, tmp_path: Path) -> None:
    text = qr(issuer)
    assert scan(first_start(issuer, tmp_path), text).valid
    again = scan(restart(issuer, tmp_path), text)
    assert (again.outcome, again.reason) == (Outcome.INVALID, "replayed")
    assert not again.claims
    # A code never shown is still accepted after the restart: the memory is complete.
    assert scan(restart(issuer, tmp_path), qr(issuer)).valid


def test_a_device_bound_replay_after_a_restart_is_refused(issuer: Issuer, tmp_path: Path) -> None:
    text = db.qr(issuer, counter=4)
    assert scan(first_start(issuer, tmp_path, at=db.AT), text, db.AT).valid
    again = scan(restart(issuer, tmp_path, at=db.AT), text, db.AT)
    assert (again.outcome, again.reason) == (Outcome.INVALID, "replayed")
    assert scan(restart(issuer, tmp_path, at=db.AT), db.qr(issuer, counter=5), db.AT).valid


def test_the_file_holds_only_live_entries_and_no_token(issuer: Issuer, tmp_path: Path) -> None:
    v = first_start(issuer, tmp_path)
    text = qr(issuer)
    assert scan(v, text).valid
    state = json.loads((tmp_path / REPLAY_FILE).read_text())
    assert state["format"] == 1 and state["complete_since"] is None
    assert len(state["seen"]) == 1 and len(bytes.fromhex(state["seen"][0][0])) == 8
    assert "SSC1" not in json.dumps(state)
    # Once every remembered code has expired, a restart forgets it and the next write
    # leaves it out: the file stays as small as the codes still live.
    later = AT + timedelta(minutes=10)
    v2 = restart(issuer, tmp_path, at=later)
    v2.update(bundle(issuer, version=2, iat=timedelta(minutes=9)), now=later)
    assert scan(v2, qr(issuer, issued_at=later, expires_at=later + timedelta(minutes=1)), later)
    assert len(json.loads((tmp_path / REPLAY_FILE).read_text())["seen"]) == 1


@pytest.mark.parametrize(
    "damage",
    [b"", b"{", b"\x00\xff" * 10, b'{"format": 2, "seen": []}', b'{"format": 1, "seen": {}}',
     b'{"format": 1, "seen": [["zz", 1]]}', b'{"format": 1, "seen": [["00", 1]]}',
     b'{"format": 1, "complete_since": true, "seen": []}', b"[" * 100_000],
)  # fmt: skip
def test_a_damaged_file_fails_closed_for_codes_that_could_be_replays(
    issuer: Issuer, tmp_path: Path, damage: bytes
) -> None:
    shown = qr(issuer)
    assert scan(first_start(issuer, tmp_path), shown).valid
    (tmp_path / REPLAY_FILE).write_bytes(damage)

    v = restart(issuer, tmp_path)  # never raises for the replay file
    assert v.replay_memory_problem and REPLAY_FILE in v.replay_memory_problem
    assert v.replay_memory_complete_since == AT
    # The code shown before the restart, and any other made before it: not "valid".
    for text in (shown, qr(issuer)):
        verdict = scan(v, text)
        assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "replay-unknown")
    # A code made after the restart is checked normally, and a second showing refused.
    fresh = qr(issuer, issued_at=AT + timedelta(seconds=6), expires_at=AT + timedelta(minutes=1))
    later = AT + timedelta(seconds=6)
    assert scan(v, fresh, later).valid
    assert scan(v, fresh, later).reason == "replayed"
    # The rebuilt file carries the cut-off: another restart stays closed for old codes.
    again = restart(issuer, tmp_path, at=later)
    assert again.replay_memory_problem is None
    assert scan(again, qr(issuer), later).reason == "replay-unknown"
    assert scan(again, fresh, later).reason == "replayed"


def test_a_missing_file_beside_a_kept_bundle_fails_closed(issuer: Issuer, tmp_path: Path) -> None:
    shown = qr(issuer)
    assert scan(first_start(issuer, tmp_path), shown).valid
    (tmp_path / REPLAY_FILE).unlink()
    verdict = scan(restart(issuer, tmp_path), shown)
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "replay-unknown")


def test_a_fresh_state_dir_starts_complete(issuer: Issuer, tmp_path: Path) -> None:
    v = first_start(issuer, tmp_path / "new")
    assert v.replay_memory_problem is None and v.replay_memory_complete_since is None
    assert scan(v, qr(issuer)).valid


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_random_bytes_in_the_replay_file_rebuild_it_never_crash(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    state_dir = tmp_path_factory.mktemp("replay")
    (state_dir / REPLAY_FILE).write_bytes(raw)
    v = restart(issuer, state_dir)
    assert v.replay_memory_problem is not None  # nothing random is a valid memory
    v.update(bundle(issuer), now=NOW + timedelta(seconds=1))
    assert scan(v, qr(issuer)).reason == "replay-unknown"


def test_evicting_a_live_entry_never_lets_it_be_replayed(issuer: Issuer) -> None:
    v = OfflineVerifier(issuer.root.verifying_key(), seen_capacity=3)
    v.update(bundle(issuer), now=NOW + timedelta(seconds=1))
    shown = [qr(issuer) for _ in range(4)]
    assert all(scan(v, text).valid for text in shown)  # the fourth evicts the first
    assert len(v._seen) == 3
    first = scan(v, shown[0])
    assert (first.outcome, first.reason) == (Outcome.STATUS_UNKNOWN, "replay-unknown")
    assert scan(v, shown[3]).reason == "replayed"


def test_a_memory_that_cannot_be_written_is_not_valid(issuer: Issuer, tmp_path: Path) -> None:
    v = first_start(issuer, tmp_path)
    (tmp_path / REPLAY_FILE).unlink()
    (tmp_path / REPLAY_FILE).mkdir()  # os.replace onto a directory fails
    text = qr(issuer)
    verdict = scan(v, text)
    assert (verdict.outcome, verdict.reason) == (Outcome.STATUS_UNKNOWN, "replay-state")
    (tmp_path / REPLAY_FILE).rmdir()
    assert scan(v, text).valid  # not remembered, as it was not accepted


def test_the_memory_expires_by_the_time_asked_about_not_the_clock(
    issuer: Issuer, tmp_path: Path
) -> None:
    """A verify as of a past time (``cardsvc verify --now``) on a gate whose clock is later:
    the code's entry is live at that time, so a restart must not drop it by the clock."""
    clock = AT + timedelta(days=1)
    text = qr(issuer)
    assert scan(first_start(issuer, tmp_path, at=clock), text).valid
    again = scan(restart(issuer, tmp_path, at=clock), text)
    assert (again.outcome, again.reason) == (Outcome.INVALID, "replayed")


def test_a_verify_as_of_a_later_time_forgets_no_code_live_by_the_clock(
    issuer: Issuer, tmp_path: Path
) -> None:
    v = first_start(issuer, tmp_path)
    shown = qr(issuer)
    assert scan(v, shown).valid
    later = AT + timedelta(minutes=10)
    ahead = qr(issuer, issued_at=later, expires_at=later + timedelta(minutes=1))
    assert scan(v, ahead, later).valid  # its write must keep the entry of ``shown``
    assert scan(restart(issuer, tmp_path), shown).reason == "replayed"


# -- deltas ---------------------------------------------------------------------------------


def test_delta_base_asks_for_a_full_bundle_after_max_deltas(issuer: Issuer, tmp_path: Path) -> None:
    v = restart(issuer, tmp_path, max_deltas=2)
    assert v.delta_base is None  # nothing held: a full bundle
    v.update(bundle(issuer), now=AT)
    assert v.delta_base == 1
    for version in (2, 3):
        v.update(bundle(issuer, version=version, base=version - 1, shards={}), now=AT)
    assert v.delta_base is None  # two deltas on the full one: time for a full bundle
    assert restart(issuer, tmp_path, max_deltas=2).delta_base is None
    v.update(bundle(issuer, version=4), now=AT)
    assert v.delta_base == 4
    assert len(json.loads((tmp_path / STATE_FILE).read_text())["chain"]) == 1


def _shard(issuer: Issuer, *, exp: timedelta, revoked: tuple[int, ...] = (REVOKED,)) -> str:
    lst = StatusList.new(1024)
    for i in revoked:
        lst.set(i, Status.INVALID)
    return encode_status_list_jwt(
        lst, sub=f"{BASE}/1", iat=NOW, exp=NOW + exp, ttl=3600,
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip


def test_a_shard_carried_over_by_a_delta_is_fresh_until_the_delta_expires(
    issuer: Issuer, tmp_path: Path
) -> None:
    # Shard 1's token lives one hour; the issuer leaves it out of later deltas while its
    # content does not change, and signs each delta with a later exp.
    v = restart(issuer, tmp_path)
    v.update(
        bundle(issuer, shards={f"{BASE}/0": status_jwt(issuer, 0), f"{BASE}/1": _shard(
            issuer, exp=timedelta(hours=1))}),
        now=NOW + timedelta(seconds=1),
    )  # fmt: skip
    later = NOW + timedelta(hours=3)
    delta = bundle(
        issuer, version=2, base=1, iat=timedelta(hours=3) - timedelta(seconds=5),
        shards={f"{BASE}/0": status_jwt(issuer, 0, revoked=(REVOKED, GOOD))},
    )  # fmt: skip
    v.update(delta, now=later)

    def token(shard: int, idx: int, at: datetime = later) -> str:
        return qr(issuer, status_shard=shard, status_idx=idx, issued_at=at,
                  expires_at=at + timedelta(minutes=1))  # fmt: skip

    assert scan(v, token(1, GOOD), later).valid  # older shard token ran out; vouched by v2
    assert scan(v, token(1, REVOKED), later).reason == "revoked"
    assert scan(v, token(0, GOOD), later).reason == "revoked"  # the delta's own change
    # The same after a restart (the chain is replayed).
    assert scan(restart(issuer, tmp_path, at=later), token(1, GOOD), later).valid
    # A full bundle carries no such promise: its own expired shard is stale.
    full = OfflineVerifier(issuer.root.verifying_key())
    full.update(bundle(issuer, shards={f"{BASE}/1": _shard(issuer, exp=timedelta(hours=4))}),
                now=NOW + timedelta(seconds=1))  # fmt: skip
    at = NOW + timedelta(hours=5)
    stale = full.verify(token(1, GOOD, at), purpose=Purpose.TRANSPORT, now=at)
    assert (stale.outcome, stale.reason) == (Outcome.STATUS_UNKNOWN, "status-stale")


# -- entry-level deltas ---------------------------------------------------------------------


def _patched(
    issuer: Issuer, held: OfflineVerifier, changes: dict[int, int], *, version: int = 2,
    base: int = 1, iat: timedelta = timedelta(minutes=1), exp: timedelta = timedelta(days=2),
    patch: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """A delta from ``base`` that patches shard 0 of the held bundle with ``changes``."""
    assert held.bundle is not None
    old = held.bundle.status_lists[f"{BASE}/0"].status_list
    new = StatusList(bytearray(old.to_bytes()), old.bits, len(old))
    for idx, status in changes.items():
        new.set(idx, status)
    return encode_bundle(
        issuer="https://issuer.test", version=version, issued_at=NOW + iat,
        expires_at=NOW + iat + exp, base=base, trust_list=issuer.trust_list.sign(issuer.root),
        status_lists={}, status_patches={f"{BASE}/0": patch or make_patch(old, new)},
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip


def test_an_entry_delta_is_applied_kept_and_replayed_at_start(
    issuer: Issuer, tmp_path: Path
) -> None:
    v = first_start(issuer, tmp_path)
    assert scan(v, qr(issuer)).valid
    merged = v.update(_patched(issuer, v, {GOOD: Status.INVALID}), now=AT)
    assert merged.patched == frozenset({f"{BASE}/0"}) and v.delta_base == 2
    verdict = scan(v, qr(issuer))
    assert (verdict.outcome, verdict.reason, verdict.bundle_version) == (
        Outcome.INVALID, "revoked", 2)  # fmt: skip
    # The state keeps the chain of tokens, not the patched list: a restart re-verifies
    # the full bundle and the delta and applies the patch again, digest checked.
    chain = json.loads((tmp_path / STATE_FILE).read_text())["chain"]
    assert len(chain) == 2 and "status_patches" not in json.dumps(chain[0])
    again = restart(issuer, tmp_path)
    assert again.bundle is not None and again.bundle.version == 2
    assert again.bundle.status_lists[f"{BASE}/0"].status_list.get(GOOD) == Status.INVALID
    assert scan(again, qr(issuer)).reason == "revoked"


def test_a_patched_shard_is_as_fresh_as_its_delta(issuer: Issuer, tmp_path: Path) -> None:
    v = first_start(issuer, tmp_path)  # shard 0's own token lives two days
    later = NOW + timedelta(days=3)
    delta = _patched(issuer, v, {GOOD: Status.VALID}, iat=timedelta(days=3) - timedelta(
        seconds=5), exp=timedelta(hours=1))  # fmt: skip
    v.update(delta, now=later)

    def token(at: datetime) -> str:
        return qr(issuer, issued_at=at, expires_at=at + timedelta(minutes=1))

    assert scan(v, token(later), later).valid  # the old token ran out; the patch is newer
    at = later + timedelta(hours=2)  # past the delta's exp
    stale = v.verify(token(at), purpose=Purpose.TRANSPORT, now=at)
    assert (stale.outcome, stale.reason) == (Outcome.STATUS_UNKNOWN, "stale-bundle")


@pytest.mark.parametrize(
    ("entries", "check"),
    [
        (encode_entries([Run(1024, 1, 1)]), "patch-index"),
        (encode_entries([Run(GOOD, 1, 7)]), "patch-status"),
        (encode_entries([Run(GOOD + 1, 1, 1)]), "patch-digest"),
    ],
)
def test_a_refused_patch_keeps_the_held_bundle_on_disk_too(
    issuer: Issuer, tmp_path: Path, entries: bytes, check: str
) -> None:
    v = first_start(issuer, tmp_path)
    assert v.bundle is not None
    old = v.bundle.status_lists[f"{BASE}/0"].status_list
    wanted = StatusList(bytearray(old.to_bytes()), old.bits, len(old))
    wanted.set(GOOD, Status.INVALID)
    patch = {"entries": b64url_encode(entries), "sha256": b64url_encode(list_digest(wanted))}
    state = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(StatusPatchError) as info:
        v.update(_patched(issuer, v, {}, patch=patch), now=AT)
    assert info.value.check == check and info.value.uri == f"{BASE}/0"
    assert v.bundle.version == 1 and (tmp_path / STATE_FILE).read_bytes() == state
    assert scan(v, qr(issuer)).valid  # still answering from the good list
    assert restart(issuer, tmp_path).bundle.version == 1  # type: ignore[union-attr]


def test_a_patch_for_a_version_not_held_is_refused(issuer: Issuer, tmp_path: Path) -> None:
    v = first_start(issuer, tmp_path)
    with pytest.raises(VerificationError) as info:
        v.update(_patched(issuer, v, {GOOD: 1}, version=3, base=2), now=AT)
    assert info.value.check == "bundle-base"
    assert v.bundle is not None and v.bundle.version == 1

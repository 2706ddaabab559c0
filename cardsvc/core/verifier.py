"""The offline verifier: a pinned root, the current verifier bundle, and QR verdicts.

A partner's gate or counter holds an :class:`OfflineVerifier`. It keeps the newest good
:class:`~cardsvc.core.bundle.Bundle` (trust list and status list shards), persisted in a
directory so it survives restarts, and answers each scanned QR text with a
:class:`Verdict`:

- ``valid``: signature by an ``ecard`` key of the bundle's trust list, inside the token's
  window, for the partner's purpose, not seen before, and the e-card's status entry in a
  fresh bundle is ``VALID``;
- ``invalid``: any of those failed (``reason`` names the check: ``signature``,
  ``expired``, ``purpose``, ``replayed``, ``revoked``, ``suspended``, ...);
- ``status-unknown``: the token itself verified but the verifier cannot vouch for its
  status (no bundle, a stale bundle, a missing or expired shard), or the clock is earlier
  than a time the issuer has already signed (``clock-rollback``).

Device-bound tokens (``SSC2:``, :mod:`cardsvc.core.devicebound`) get the same verdicts:
both signatures (the issuer's credential, the phone's wrapper), the slot, then replay of
(e-card, slot, counter) and the e-card's status from the bundle.

A verdict discloses only the attributes the purpose allows (the token cannot carry more),
never the e-card reference or the ``jti``.

Freshness: :meth:`OfflineVerifier.bundle_age` is now minus the bundle's signed time; past
``max_age`` (or past the bundle's ``exp``) a good token gets ``status-unknown`` with
reason ``stale-bundle``. The verifier remembers the newest signed time it has seen
(bundles, trust lists, status lists) and refuses to work with a clock earlier than that,
less ``leeway``.

Updates: :meth:`OfflineVerifier.update` verifies a new bundle (full or delta) against the
pinned root and the held bundle; a tampered, truncated, rolled-back or foreign-key bundle
raises the typed error of :func:`~cardsvc.core.bundle.verify_bundle` and the held bundle
is kept, on disk too. :attr:`OfflineVerifier.delta_base` says which version to ask a delta
from (``?since=``); after ``max_deltas`` deltas it asks for a full bundle again, so the
kept chain stays short. A shard a delta carries over (unchanged since its base) is vouched
for by the delta's signature: it stays fresh until the newest bundle's ``exp``, not only
until the older shard token's own ``exp``. A shard a delta *patches* entry by entry
(:mod:`cardsvc.core.statuspatch`) is rebuilt from the held list, checked against the
issuer's digest, and is as fresh as that delta; a patch for a shard not held, out of
range, with a status the list cannot hold, or whose result differs from the issuer's list
raises :class:`~cardsvc.core.statuspatch.StatusPatchError` and the held bundle is kept.

Persistence across restarts: the state file keeps the chain of accepted bundle tokens
(the last full one and the deltas after it), not the patched lists. At start the chain is
re-verified against the pinned root and the patches are applied again, each checked
against its digest, so the file needs no integrity of its own and a patched list is never
trusted from disk. Entry deltas are small, so this costs little; ``max_deltas`` bounds it.

Replay memory: the ``jti`` of each accepted ``SSC1:`` token and the (e-card, slot,
counter) of each accepted ``SSC2:`` code are remembered until the code expires (as of the
time a verify is asked about, ``now``, and by the clock: a run as of a past time, such as
``cardsvc verify --now``, still finds the codes live then), and with
a ``state_dir`` written to :data:`REPLAY_FILE` (atomically, before ``valid`` is answered),
so a restarted gate still refuses a second showing. When that memory cannot be trusted
whole (the file is missing beside a kept bundle, unreadable or damaged; or the memory was
full of live entries and one was evicted) the verifier notes the time from which it is
complete again: a code that could have been accepted before that time gets
``status-unknown`` with reason ``replay-unknown`` (ask for a fresh code) instead of
``valid``; codes made afterwards are checked normally. It never crashes on the file and
never lets a possible replay through.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from cardsvc.core import devicebound
from cardsvc.core.bundle import Bundle, verify_bundle
from cardsvc.core.credential import disclosed_claims
from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import VerifyingKey, b64url_decode
from cardsvc.core.qrtoken import Attribute, Purpose, verify_qr_token
from cardsvc.core.statuslist import Status

#: Default maximum bundle age before a good token gets ``status-unknown``.
DEFAULT_MAX_AGE: Final = timedelta(hours=24)
#: Clock slack for bundles and for the clock-rollback check.
DEFAULT_LEEWAY: Final = timedelta(seconds=30)
#: Clock slack for QR token windows (a token lives about a minute).
DEFAULT_TOKEN_LEEWAY: Final = timedelta(seconds=5)
#: Entries in the replay seen-set; expired entries are dropped first.
DEFAULT_SEEN_CAPACITY: Final = 100_000
#: Deltas applied on one full bundle before :attr:`OfflineVerifier.delta_base` asks for a
#: full bundle again (bounds the kept chain, replayed at every start).
DEFAULT_MAX_DELTAS: Final = 32
STATE_FILE: Final = "bundle-state.json"
#: The persisted replay memory, beside :data:`STATE_FILE`.
REPLAY_FILE: Final = "replay-state.json"
_STATE_FORMAT: Final = 1
_REPLAY_FORMAT: Final = 1
_REPLAY_KEY_SIZES: Final = frozenset({8, 16})  # an SSC1 jti; an SSC2 (e-card, slot, counter)
_MAX_EPOCH: Final = 2**40  # seconds; anything later in the replay file is damage


class Outcome(StrEnum):
    """The three answers a verifier gives (CLI exit status 0, 1, 2)."""

    VALID = "valid"
    INVALID = "invalid"
    STATUS_UNKNOWN = "status-unknown"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The answer for one scanned token: outcome, why, and what the purpose discloses.

    ``reason`` is a short stable check name (``None`` when valid); ``claims`` holds the
    purpose's attributes (typed: ``date``, ``bytes``, ``int``, ``str``), empty unless the
    token's signature verified and its status is not known to be bad;
    ``bundle_age`` is ``None`` when the verifier holds no bundle.
    """

    outcome: Outcome
    reason: str | None = None
    detail: str | None = None
    purpose: Purpose | None = None
    claims: Mapping[Attribute, object] = field(default_factory=dict)
    expires_at: datetime | None = None
    bundle_version: int | None = None
    bundle_age: timedelta | None = None

    @property
    def valid(self) -> bool:
        return self.outcome is Outcome.VALID

    def to_json(self) -> dict[str, Any]:
        """A JSON view for logs and ``cardsvc verify --json``."""
        return {
            "verdict": self.outcome.value,
            "reason": self.reason,
            "detail": self.detail,
            "purpose": self.purpose.name.lower() if self.purpose else None,
            "claims": disclosed_claims(self.claims),
            "exp": int(self.expires_at.timestamp()) if self.expires_at else None,
            "bundle": {
                "version": self.bundle_version,
                "age_seconds": (
                    int(self.bundle_age.total_seconds()) if self.bundle_age is not None else None
                ),
            },
        }


_STATUS_REASONS: Final[dict[int, str]] = {Status.INVALID: "revoked", Status.SUSPENDED: "suspended"}


def _shard_index(bundle: Bundle) -> dict[int, str]:
    """Shard number -> URI, from URIs ending in ``/<shard>``; ambiguous shards dropped."""
    index: dict[int, str] = {}
    ambiguous: set[int] = set()
    for uri in bundle.status_lists:
        last = uri.rstrip("/").rsplit("/", 1)[-1]
        if not (last.isascii() and last.isdigit()):
            continue
        shard = int(last)
        if shard in index:
            ambiguous.add(shard)
        index[shard] = uri
    for shard in ambiguous:
        del index[shard]
    return index


def _sent_shards(token: str) -> set[str]:
    """The shard URIs a bundle token carries itself (called only once it has verified)."""
    payload = json.loads(b64url_decode(token.split(".")[1], what="bundle payload"))
    return set(payload["status_lists"])


def _fresh_until(
    token: str, bundle: Bundle, previous: Mapping[str, datetime]
) -> dict[str, datetime]:
    """Until when each shard of ``bundle`` counts as fresh.

    A shard the token carries whole: its own ``exp``. A shard a delta patches: the
    bundle's ``exp`` (the patch is vouched for by the bundle's signature alone). A shard a
    delta carries over: the delta's signature says it is unchanged since the base (the
    issuer leaves unchanged shards out), so it is fresh until the bundle's ``exp`` even
    when the older shard token ran out.
    """
    if bundle.base is None:
        return {uri: shard.exp for uri, shard in bundle.status_lists.items()}
    sent = _sent_shards(token)
    return {
        uri: shard.exp
        if uri in sent
        else bundle.expires_at
        if uri in bundle.patched
        else max(shard.exp, previous.get(uri, shard.exp), bundle.expires_at)
        for uri, shard in bundle.status_lists.items()
    }


def _parse_replay(raw: bytes, capacity: int) -> tuple[dict[bytes, float], float | None]:
    """The replay file: ``{"format": 1, "complete_since": int | null, "seen": [[hex, exp]]}``.

    Raises :class:`DecodeError` for anything else (the caller rebuilds, failing closed).
    """
    what = "replay memory"
    if len(raw) > 64 * (capacity + 16):
        raise DecodeError(what, f"{len(raw)} bytes is more than {capacity} entries take")
    try:
        state = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(what, f"not JSON ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != _REPLAY_FORMAT:
        raise DecodeError(what, "unknown format")
    since = state.get("complete_since")
    if since is not None and not _is_epoch(since):
        raise DecodeError(what, "complete_since must be epoch seconds or null")
    entries = state.get("seen")
    if not isinstance(entries, list) or len(entries) > capacity:
        raise DecodeError(what, f"seen must be a list of at most {capacity} entries")
    seen: dict[bytes, float] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DecodeError(what, "an entry must be [hex key, expiry]")
        try:
            key = bytes.fromhex(entry[0])
        except ValueError:
            raise DecodeError(what, "an entry's key is not hex") from None
        if len(key) not in _REPLAY_KEY_SIZES or not _is_epoch(entry[1]):
            raise DecodeError(what, "an entry's key or expiry is malformed")
        seen[key] = float(entry[1])
    return seen, None if since is None else float(since)


def _is_epoch(value: object) -> bool:
    return type(value) is int and 0 <= value < _MAX_EPOCH


@dataclass(frozen=True, kw_only=True, slots=True)
class _Checked:
    """What the stateful checks need of a token whose signatures verified, either form."""

    replay_key: bytes  # an SSC1 jti (8 bytes) or an SSC2 (e-card, slot, counter) (16)
    expires_at: datetime
    remember_until: datetime  # when no verifier would take it any more
    first_acceptable: datetime  # the earliest a verifier could have taken it
    status_shard: int
    status_idx: int
    attributes: Mapping[Attribute, object]


class OfflineVerifier:
    """Verifies QR tokens offline against a pinned root and the newest good bundle.

    ``state_dir`` (optional) persists the accepted bundle chain, the newest signed time
    seen and the replay memory; without it the verifier forgets all three on exit.
    ``clock`` returns the current timezone-aware UTC time; every method also takes an
    explicit ``now``.
    ``status_base_uri``, when given, is where the issuer publishes shards
    (``<base>/<shard>``); otherwise a token's shard is found by the last path segment of
    the bundle's shard URIs. ``skew_slots`` (0 or 1) is how far a device-bound token's
    30-second slot may be from this verifier's clock. ``max_deltas``: see
    :attr:`delta_base`. ``seen_capacity`` bounds the replay memory (expired entries go
    first; evicting a live one makes older codes ``replay-unknown``, never acceptable).

    A damaged bundle state file raises :class:`DecodeError` (or the bundle's
    :class:`VerificationError`); a damaged replay file never raises, see
    :attr:`replay_memory_problem`.
    """

    def __init__(
        self,
        root: VerifyingKey,
        *,
        state_dir: Path | None = None,
        max_age: timedelta = DEFAULT_MAX_AGE,
        leeway: timedelta = DEFAULT_LEEWAY,
        token_leeway: timedelta = DEFAULT_TOKEN_LEEWAY,
        status_base_uri: str | None = None,
        seen_capacity: int = DEFAULT_SEEN_CAPACITY,
        skew_slots: int = devicebound.MAX_SKEW_SLOTS,
        max_deltas: int = DEFAULT_MAX_DELTAS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.root = root
        self.max_age = max_age
        self.leeway = leeway
        self.token_leeway = token_leeway
        self._state_dir = state_dir
        self._status_base = status_base_uri.rstrip("/") if status_base_uri else None
        self._clock = clock
        self._lock = threading.Lock()
        self._bundle: Bundle | None = None
        self._chain: list[dict[str, Any]] = []
        self._shards: dict[int, str] = {}
        self._fresh: dict[str, datetime] = {}
        self._newest_signed: datetime | None = None
        if seen_capacity < 1 or max_deltas < 0:
            raise ValueError("seen_capacity must be positive and max_deltas not negative")
        self.max_deltas = max_deltas
        self._replay_lock = threading.Lock()
        self._seen: dict[bytes, float] = {}  # replay key -> remembered until (epoch s)
        self._seen_capacity = seen_capacity
        self._complete_since: float | None = None
        self._replay_problem: str | None = None
        if isinstance(skew_slots, bool) or not 0 <= skew_slots <= devicebound.MAX_SKEW_SLOTS:
            raise ValueError(f"skew_slots must be 0..{devicebound.MAX_SKEW_SLOTS}")
        #: 30-second slots a device-bound token's slot may differ from the clock's (0 or 1).
        self.skew_slots = skew_slots
        if state_dir is not None:
            self._load(state_dir)
            self._load_replay(state_dir)

    # -- state ----------------------------------------------------------------------------

    @property
    def bundle(self) -> Bundle | None:
        """The bundle in use (after deltas, merged), ``None`` before the first update."""
        return self._bundle

    @property
    def delta_base(self) -> int | None:
        """The version to ask a delta from (``?since=``), ``None`` when a full one is due.

        A full bundle is due when none is held, and once ``max_deltas`` deltas were
        applied on the last full one (the kept chain is replayed at every start).
        """
        if self._bundle is None or len(self._chain) > self.max_deltas:
            return None
        return self._bundle.version

    @property
    def replay_memory_problem(self) -> str | None:
        """Why the replay memory was rebuilt at start (``None`` when it loaded whole)."""
        return self._replay_problem

    @property
    def replay_memory_complete_since(self) -> datetime | None:
        """Codes that could have been accepted before this time get ``replay-unknown``.

        ``None`` when the memory is complete: nothing lost since this verifier began.
        """
        since = self._complete_since
        return None if since is None else datetime.fromtimestamp(since, UTC)

    @property
    def newest_signed_time(self) -> datetime | None:
        """The newest issuer-signed time seen; the clock may not go back before it."""
        return self._newest_signed

    def fresh_until(self, uri: str) -> datetime | None:
        """Until when the held bundle vouches for status list ``uri`` (``None``: not held).

        A shard a delta carried over or patched is vouched for by the newer bundle's
        signature, so this can be later than the shard token's own ``exp``.
        """
        bundle = self._bundle
        shard = bundle.status_lists.get(uri) if bundle is not None else None
        return None if shard is None else self._fresh.get(uri, shard.exp)

    def bundle_age(self, now: datetime | None = None) -> timedelta | None:
        """How old the held bundle is (now minus its signed time), ``None`` without one."""
        if self._bundle is None:
            return None
        return (now or self._clock()) - self._bundle.issued_at

    def check_clock(self, now: datetime | None = None) -> datetime:
        """``now`` (or the clock), refused if earlier than the newest signed time seen.

        Raises ``VerificationError('clock-rollback')``.
        """
        now = now or self._clock()
        newest = self._newest_signed
        if newest is not None and now < newest - self.leeway:
            raise VerificationError(
                "clock-rollback",
                f"clock {now:%Y-%m-%dT%H:%M:%SZ} is before the issuer-signed time "
                f"{newest:%Y-%m-%dT%H:%M:%SZ} already seen; fix the clock",
            )
        return now

    def update(self, token: str, *, now: datetime | None = None) -> Bundle:
        """Verify a bundle (full, or a delta on the held one) and make it current.

        Raises the :func:`~cardsvc.core.bundle.verify_bundle` errors (``bundle-rollback``,
        ``bundle-base``, ``signature``, ``key-unknown`` ...) or ``clock-rollback``; on any
        failure the held bundle stays in use, in memory and on disk.
        """
        with self._lock:
            now = self.check_clock(now)
            bundle = verify_bundle(
                token, root=self.root, now=now, leeway=self.leeway, previous=self._bundle
            )
            fresh = _fresh_until(token, bundle, self._fresh)
            entry = {"token": token, "accepted_at": int(now.timestamp())}
            chain = [entry] if bundle.base is None else [*self._chain, entry]
            self._install(bundle, chain, fresh)
            self._save()
            return bundle

    def _install(
        self, bundle: Bundle, chain: list[dict[str, Any]], fresh: dict[str, datetime]
    ) -> None:
        self._bundle = bundle
        self._chain = chain
        self._fresh = fresh
        self._shards = _shard_index(bundle)
        signed = [bundle.issued_at, bundle.trust_list.issued_at]
        signed += [t.iat for t in bundle.status_lists.values()]
        if self._newest_signed is not None:
            signed.append(self._newest_signed)
        self._newest_signed = max(signed)

    def _load(self, state_dir: Path) -> None:
        """Replay the persisted chain; a damaged file leaves the verifier without a bundle."""
        path = state_dir / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise DecodeError("verifier state", f"{path}: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise DecodeError("verifier state", f"{path}: unknown format")
        newest = state.get("newest_signed_time")
        if isinstance(newest, int) and not isinstance(newest, bool):
            self._newest_signed = datetime.fromtimestamp(newest, UTC)
        bundle: Bundle | None = None
        fresh: dict[str, datetime] = {}
        chain = state.get("chain")
        if not isinstance(chain, list):
            raise DecodeError("verifier state", f"{path}: chain must be a list")
        for entry in chain:
            if not isinstance(entry, dict) or not isinstance(entry.get("accepted_at"), int):
                raise DecodeError("verifier state", f"{path}: malformed chain entry")
            # Re-verified against the pinned root at the time it was accepted: the file
            # is not trusted, the signatures are.
            at = datetime.fromtimestamp(entry["accepted_at"], UTC)
            bundle = verify_bundle(
                entry["token"], root=self.root, now=at, leeway=self.leeway, previous=bundle
            )
            fresh = _fresh_until(entry["token"], bundle, fresh)
        if bundle is not None:
            self._install(bundle, chain, fresh)

    def _save(self) -> None:
        if self._state_dir is None:
            return
        self._state_dir.mkdir(parents=True, exist_ok=True)
        newest = self._newest_signed
        state = {
            "format": _STATE_FORMAT,
            "newest_signed_time": int(newest.timestamp()) if newest else None,
            "chain": self._chain,
        }
        if not (self._state_dir / REPLAY_FILE).exists():
            # First, so that a kept bundle always has a replay file beside it: one missing
            # there means the memory was lost (see _load_replay).
            with self._replay_lock:
                self._save_replay()
        write_atomically(self._state_dir / STATE_FILE, json.dumps(state).encode())

    def _load_replay(self, state_dir: Path) -> None:
        """Load the replay memory; anything wrong with it rebuilds it, failing closed.

        Not raising is deliberate: a gate must keep working after a torn disk, and the
        ``complete_since`` time keeps every code that might have been seen from passing.
        """
        path = state_dir / REPLAY_FILE
        now = self._clock().timestamp()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if (state_dir / STATE_FILE).exists():  # it ran before: the memory is gone
                self._lose_replay_memory(now, f"{path} is missing beside a kept bundle")
            return
        except OSError as exc:
            self._lose_replay_memory(now, f"{path}: {exc}")
            return
        try:
            seen, since = _parse_replay(raw, self._seen_capacity)
        except DecodeError as exc:
            self._lose_replay_memory(now, f"{path}: {exc.detail}")
            return
        # Every entry is kept: whether one has expired depends on the time each verify is
        # asked about (``now``, e.g. ``cardsvc verify --now`` in the past), not the clock.
        self._seen = seen
        self._complete_since = since

    def _lose_replay_memory(self, at: float, problem: str) -> None:
        self._replay_problem = problem
        self._complete_since = max(at, self._complete_since or at)

    def _save_replay(self) -> None:
        if self._state_dir is None:
            return
        self._state_dir.mkdir(parents=True, exist_ok=True)
        since = self._complete_since
        state = {
            "format": _REPLAY_FORMAT,
            "complete_since": math.ceil(since) if since is not None else None,
            "seen": [[key.hex(), math.ceil(until)] for key, until in self._seen.items()],
        }
        write_atomically(self._state_dir / REPLAY_FILE, json.dumps(state).encode())

    # -- verification ---------------------------------------------------------------------

    def verify(self, text: str, *, purpose: Purpose, now: datetime | None = None) -> Verdict:
        """Verify QR text for ``purpose``; never raises for bad input, answers a verdict.

        Takes both forms: an issuer-minted ``SSC1:`` token and a device-bound ``SSC2:``
        one (:mod:`cardsvc.core.devicebound`), whose reasons add ``device-mismatch``,
        ``device-signature`` and ``slot``; a second showing of the same (e-card, slot,
        counter) is ``replayed``.
        """
        bundle = self._bundle
        version = bundle.version if bundle else None
        try:
            now = self.check_clock(now)
        except VerificationError as exc:
            return Verdict(
                outcome=Outcome.STATUS_UNKNOWN,
                reason=exc.check,
                detail=exc.detail.removeprefix(f"{exc.check}: "),
                bundle_version=version,
            )
        if bundle is None:
            return Verdict(
                outcome=Outcome.STATUS_UNKNOWN,
                reason="no-bundle",
                detail="no verifier bundle loaded: cannot check signature or status",
            )
        age = now - bundle.issued_at
        try:
            checked = self._check_token(text, bundle, purpose, now)
        except VerificationError as exc:
            return Verdict(
                outcome=Outcome.INVALID,
                reason=exc.check,
                detail=exc.detail.removeprefix(f"{exc.check}: "),
                purpose=purpose,
                bundle_version=version,
                bundle_age=age,
            )
        except CoreError as exc:
            return Verdict(
                outcome=Outcome.INVALID,
                reason=exc.code,
                detail=exc.detail,
                purpose=purpose,
                bundle_version=version,
                bundle_age=age,
            )

        def answer(outcome: Outcome, reason: str | None, detail: str | None) -> Verdict:
            return Verdict(
                outcome=outcome,
                reason=reason,
                detail=detail,
                purpose=purpose,
                claims={} if outcome is Outcome.INVALID else checked.attributes,
                expires_at=checked.expires_at,
                bundle_version=version,
                bundle_age=age,
            )

        t = now.timestamp()
        replayed = (Outcome.INVALID, "replayed", "this token was already presented")
        if self._seen.get(checked.replay_key, 0.0) > t:
            return answer(*replayed)
        if age > self.max_age or now > bundle.expires_at + self.leeway:
            return answer(
                Outcome.STATUS_UNKNOWN,
                "stale-bundle",
                f"bundle version {bundle.version} is {_human(age)} old "
                f"(maximum {_human(self.max_age)}); update it",
            )
        outcome, reason, detail = self._status(checked.status_shard, checked.status_idx, now)
        if outcome is not Outcome.VALID:
            return answer(outcome, reason, detail)
        try:
            claimed = self._claim(checked, t)
        except OSError as exc:
            return answer(
                Outcome.STATUS_UNKNOWN,
                "replay-state",
                f"cannot keep the replay memory ({exc}); fix the state directory",
            )
        if claimed is None:
            return answer(Outcome.VALID, None, None)
        if claimed == "replayed":
            return answer(*replayed)
        since = datetime.fromtimestamp(self._complete_since or t, UTC)
        return answer(
            Outcome.STATUS_UNKNOWN,
            "replay-unknown",
            f"the replay memory vouches only for codes made after {since:%Y-%m-%dT%H:%M:%SZ} "
            "(it was lost or full); ask for a fresh code",
        )

    def _check_token(self, text: str, bundle: Bundle, purpose: Purpose, now: datetime) -> _Checked:
        """Signatures, window and purpose of either token form; raises the failed check."""
        if isinstance(text, str) and text.startswith(devicebound.SCHEME_PREFIX):
            presented = devicebound.verify_device_bound(
                text,
                trust_list=bundle.trust_list,
                now=now,
                leeway=self.token_leeway,
                purpose=purpose,
                skew_slots=self.skew_slots,
            )
            credential = presented.credential
            skew = devicebound.MAX_SKEW_SLOTS  # what any configuration of a verifier takes
            return _Checked(
                replay_key=presented.replay_key,
                expires_at=presented.valid_until,
                remember_until=presented.valid_until + self.token_leeway,
                first_acceptable=datetime.fromtimestamp(
                    (presented.slot - skew) * devicebound.SLOT_SECONDS, UTC
                ),
                status_shard=credential.status_shard,
                status_idx=credential.status_idx,
                attributes=credential.attributes,
            )
        token = verify_qr_token(
            text, trust_list=bundle.trust_list, now=now, leeway=self.token_leeway, purpose=purpose
        )
        return _Checked(
            replay_key=token.jti,
            expires_at=token.expires_at,
            remember_until=token.expires_at + self.token_leeway,
            first_acceptable=token.issued_at - self.token_leeway,
            status_shard=token.status_shard,
            status_idx=token.status_idx,
            attributes=token.attributes,
        )

    def _status(
        self, status_shard: int, status_idx: int, now: datetime
    ) -> tuple[Outcome, str | None, str | None]:
        if self._status_base is not None:
            uri: str | None = f"{self._status_base}/{status_shard}"
        else:
            uri = self._shards.get(status_shard)
        shard = self._bundle.status_lists.get(uri) if self._bundle and uri else None
        if shard is None or uri is None:
            return (
                Outcome.STATUS_UNKNOWN,
                "status-missing",
                f"the bundle holds no status list for shard {status_shard}",
            )
        if now > self._fresh.get(uri, shard.exp) + self.leeway:
            return Outcome.STATUS_UNKNOWN, "status-stale", f"status list {shard.sub} expired"
        lst = shard.status_list
        if status_idx >= len(lst):
            return (
                Outcome.STATUS_UNKNOWN,
                "status-missing",
                f"index {status_idx} is beyond status list {shard.sub}",
            )
        status = lst.get(status_idx)
        if status == Status.VALID:
            return Outcome.VALID, None, None
        reason = _STATUS_REASONS.get(status, "status")
        return Outcome.INVALID, reason, f"e-card status is {reason} ({status})"

    def _claim(self, checked: _Checked, t: float) -> str | None:
        """Remember the code (persisted first); ``None`` if taken, else why not.

        ``"replayed"``: seen before; ``"replay-unknown"``: it could have been taken before
        the memory became complete. Checks and remembering happen under one lock, so two
        scanners sharing a verifier cannot both take one code. Raises ``OSError`` when the
        memory cannot be kept; the code is then forgotten, as it was not taken.
        """
        key, until = checked.replay_key, checked.remember_until.timestamp()
        # An entry is forgotten once expired both as of ``t`` and by the clock: a verify
        # as of a past time keeps what is live then, one as of a later time keeps what
        # is live now.
        expired = min(t, self._clock().timestamp())
        with self._replay_lock:
            seen = self._seen
            if seen.get(key, 0.0) > t:
                return "replayed"
            since = self._complete_since
            if since is not None and checked.first_acceptable.timestamp() <= since:
                return "replay-unknown"
            if self._state_dir is not None or len(seen) >= self._seen_capacity:
                # Only when the memory is written (which costs as much) or full.
                for old in [k for k, e in seen.items() if e <= expired]:
                    del seen[old]
            if len(seen) >= self._seen_capacity:
                # All live: drop the oldest, and no code that could have been taken
                # before now is vouched for any more (it might be the dropped one).
                while len(seen) >= self._seen_capacity:
                    del seen[next(iter(seen))]
                self._complete_since = max(t, self._complete_since or t)
            seen[key] = until
            try:
                self._save_replay()
            except OSError:
                del seen[key]
                raise
            return None


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if abs(seconds) < 120:
        return f"{seconds} s"
    if abs(seconds) < 7200:
        return f"{seconds // 60} min"
    if abs(seconds) < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86_400} d"

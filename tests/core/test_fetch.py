"""BundleFetcher against a real HTTP server on loopback: full, delta, 304, and every
failure keeping the held bundle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.core.fetch import FETCH_FILE, BundleFetcher, RefreshOutcome
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.statuslist import Status
from cardsvc.core.verifier import OfflineVerifier
from tests.core.conftest import NOW, Issuer, new_signer
from tests.core.test_bundle import make_bundle, status_jwt
from tests.standin import Answer, StandIn, stand_in

SECOND = "https://issuer.test/v1/status-lists/1"


@pytest.fixture
def server() -> Iterator[tuple[StandIn, str]]:
    with stand_in() as http:
        yield http, f"{http.base}/bundle?shard=0"


def verifier(issuer: Issuer, state: Path | None = None) -> OfflineVerifier:
    return OfflineVerifier(issuer.root.verifying_key(), state_dir=state, clock=lambda: NOW)


def fetcher(v: OfflineVerifier, url: str, state: Path | None = None) -> BundleFetcher:
    return BundleFetcher(v, url, state_dir=state, clock=lambda: NOW)


def test_full_then_304_then_entry_delta_with_etag(
    issuer: Issuer, server: tuple[StandIn, str], tmp_path: Path
) -> None:
    http, url = server
    v1 = make_bundle(issuer, version=1)
    v2 = make_bundle(issuer, version=2, base=1, shards={SECOND: status_jwt(issuer, SECOND, (7,))})

    def reply(query: dict[str, list[str]], etag: str | None) -> Answer:
        if etag == '"v1"':
            return Answer(status=304, headers={"ETag": '"v1"', "Bundle-Version": "1"})
        if query.get("since") == ["1"]:
            return Answer(body=v2.encode(), headers={"ETag": '"v2"', "Bundle-Version": "2"})
        return Answer(body=v1.encode(), headers={"ETag": '"v1"', "Bundle-Version": "1"})

    http.reply = reply
    state = tmp_path / "state"
    held = verifier(issuer, state)
    first = fetcher(held, url, state).refresh(now=NOW)
    assert first.outcome is RefreshOutcome.UPDATED and first.bundle is not None
    assert first.bundle.version == 1 and first.downloaded == len(v1)
    assert http.queries[-1] == {"shard": ["0"]}  # other parameters kept, no since

    # A new process: the memo on disk sends the ETag, and the 304 is "nothing new".
    again = fetcher(verifier(issuer, state), url, state)
    unchanged = again.refresh(now=NOW)
    assert unchanged.outcome is RefreshOutcome.UNCHANGED and unchanged.downloaded == 0
    assert http.queries[-1] == {"shard": ["0"], "since": ["1"], "delta": ["entries"]}
    assert again.confirmed_at == NOW

    # Content changed: the delta comes, applies, and the memo follows it.
    http.reply = lambda q, e: reply(q, None)
    updated = again.refresh(now=NOW)
    assert updated.outcome is RefreshOutcome.UPDATED and updated.bundle is not None
    assert updated.bundle.version == 2 and updated.bundle.base == 1
    assert updated.bundle.status_lists[SECOND].status_list.get(7) == Status.INVALID
    memo = json.loads((state / FETCH_FILE).read_text())
    assert memo["version"] == 2 and memo["etag"] == '"v2"'


def test_a_delta_that_does_not_apply_is_followed_by_a_full_bundle(
    issuer: Issuer, server: tuple[StandIn, str]
) -> None:
    http, url = server
    v1, v9 = make_bundle(issuer, version=1), make_bundle(issuer, version=9)
    wrong_base = make_bundle(issuer, version=9, base=8, shards={})

    def reply(query: dict[str, list[str]], _etag: str | None) -> Answer:
        if query.get("since") == ["1"]:
            return Answer(body=wrong_base.encode(), headers={"Bundle-Version": "9"})
        return Answer(body=(v9 if http.queries[1:] else v1).encode())

    http.reply = reply
    held = verifier(issuer)
    fetch = fetcher(held, url)
    assert fetch.refresh(now=NOW).outcome is RefreshOutcome.UPDATED
    refresh = fetch.refresh(now=NOW)
    assert refresh.outcome is RefreshOutcome.UPDATED
    assert refresh.bundle is not None and refresh.bundle.version == 9
    assert refresh.bundle.base is None  # the full one
    assert "since" not in http.queries[-1]
    assert refresh.downloaded == len(wrong_base) + len(v9)


@pytest.mark.parametrize(
    ("answer", "outcome", "words"),
    [
        (Answer(status=500, body=b"boom"), RefreshOutcome.FAILED, "HTTP 500"),
        (Answer(body="签名".encode()), RefreshOutcome.FAILED, "not ASCII"),
        (Answer(body=b"x" * 5000), RefreshOutcome.FAILED, "larger than"),
        (Answer(body=b"not.a.jws"), RefreshOutcome.REFUSED, "bundle refused"),
    ],
)
def test_a_failed_or_refused_refresh_keeps_the_held_bundle(
    issuer: Issuer, server: tuple[StandIn, str], answer: Answer, outcome: RefreshOutcome,
    words: str,
) -> None:  # fmt: skip
    http, url = server
    v1 = make_bundle(issuer, version=1)
    http.reply = lambda _q, _e: Answer(body=v1.encode())
    held = verifier(issuer)
    assert fetcher(held, url).refresh(now=NOW).outcome is RefreshOutcome.UPDATED
    http.reply = lambda _q, _e: answer
    small = BundleFetcher(held, url, max_download=len(v1) + 100, clock=lambda: NOW)
    refresh = small.refresh(now=NOW)
    assert refresh.outcome is outcome and words in refresh.detail
    assert not refresh.current
    assert refresh.bundle is not None and refresh.bundle.version == 1
    assert held.bundle is not None and held.bundle.version == 1


def test_a_bundle_from_another_key_is_refused(
    issuer: Issuer, server: tuple[StandIn, str]
) -> None:
    http, url = server
    forged = make_bundle(issuer, version=1, signer=new_signer())
    http.reply = lambda _q, _e: Answer(body=forged.encode())
    refresh = fetcher(verifier(issuer), url).refresh(now=NOW)
    assert refresh.outcome is RefreshOutcome.REFUSED and refresh.bundle is None


def test_no_answer_at_all_is_a_failed_refresh(issuer: Issuer) -> None:
    refresh = fetcher(verifier(issuer), "http://127.0.0.1:9/bundle").refresh(now=NOW)
    assert refresh.outcome is RefreshOutcome.FAILED and "cannot fetch" in refresh.detail


def test_a_damaged_memo_costs_one_full_download(
    issuer: Issuer, server: tuple[StandIn, str], tmp_path: Path
) -> None:
    http, url = server
    v1 = make_bundle(issuer, version=1)
    http.reply = lambda _q, e: (
        Answer(status=304) if e else Answer(body=v1.encode(), headers={"ETag": '"v1"'})
    )
    state = tmp_path / "state"
    fetcher(verifier(issuer, state), url, state).refresh(now=NOW)
    (state / FETCH_FILE).write_text("{not json")
    again = fetcher(verifier(issuer, state), url, state)
    assert again.confirmed_at is None
    refresh = again.refresh(now=NOW + timedelta(seconds=1))
    # No ETag to send: the issuer's same version comes whole, and is taken again.
    assert refresh.current and refresh.bundle is not None and refresh.bundle.version == 1


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        BundleFetcher(OfflineVerifier(new_signer().verifying_key()), "file:///etc/passwd")


def test_status_list_key_purpose_is_pinned(issuer: Issuer, server: tuple[StandIn, str]) -> None:
    http, url = server
    wrong = make_bundle(issuer, version=1, signer=issuer.signer(KeyPurpose.ECARD))
    http.reply = lambda _q, _e: Answer(body=wrong.encode())
    refresh = fetcher(verifier(issuer), url).refresh(now=NOW)
    assert refresh.outcome is RefreshOutcome.REFUSED and "purpose" in refresh.detail


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300), status=st.sampled_from([200, 200, 304, 404, 500]))
def test_any_answer_is_a_typed_outcome_and_keeps_the_held_bundle(
    issuer: Issuer, server: tuple[StandIn, str], body: bytes, status: int
) -> None:
    http, url = server
    v1 = make_bundle(issuer, version=1)
    http.reply = lambda _q, _e: Answer(body=v1.encode())
    held = verifier(issuer)
    fetch = fetcher(held, url)
    fetch.refresh(now=NOW)
    http.reply = lambda _q, _e: Answer(status=status, body=body if status != 304 else b"")
    refresh = fetch.refresh(now=NOW)  # never raises
    assert refresh.outcome in set(RefreshOutcome)
    assert held.bundle is not None and held.bundle.version == 1

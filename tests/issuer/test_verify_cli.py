"""``cardsvc verify``: verdicts, documented exit codes, bundles from files, QR images."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import qrcode
from typer.testing import CliRunner

from cardsvc.cli.main import app
from cardsvc.cli.verify import LOCK_FILE
from cardsvc.core.bundle import encode_bundle
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import Purpose, encode_qr_token
from cardsvc.core.verifier import REPLAY_FILE, STATE_FILE
from tests.core.test_schemas import GENERATOR

G = GENERATOR
CARDSVC = shutil.which("cardsvc", path=str(Path(sys.executable).parent)) or "cardsvc"
AT = G.NOW + timedelta(seconds=5)
RUNNER = CliRunner()


def make_bundle(*, version: int = 1, iat: timedelta = timedelta(0), signer: Any = None) -> str:
    return str(
        encode_bundle(
            issuer=G.ISSUER,
            version=version,
            issued_at=G.NOW - timedelta(minutes=1) + iat,
            expires_at=G.NOW + timedelta(hours=1),
            base=None,
            trust_list=G.TRUST_LIST_TOKEN,
            status_lists={f"{G.STATUS_BASE}/0": G.status_token()},
            signer=signer or G.SIGNERS[KeyPurpose.STATUS_LIST],
        )
    )


def qr(purpose: Purpose = Purpose.TRANSPORT, idx: int = 1234) -> str:
    """A new code each call (its own ``jti``): runs sharing a state would see a replay."""
    attrs = G.TRANSPORT if purpose is Purpose.TRANSPORT else G.IDENTITY
    token = G.qr_token(purpose, attrs, status_idx=idx, jti=secrets.token_bytes(8))
    return str(encode_qr_token(token, G.SIGNERS[KeyPurpose.ECARD]))


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own: the default state directory must never be the real one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("CARDSVC_VERIFY_STATE", raising=False)
    return tmp_path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "root.jwk").write_text(json.dumps(G.ROOT.verifying_key().jwk()))
    (tmp_path / "bundle.jws").write_text(make_bundle())
    return {"root": str(tmp_path / "root.jwk"), "bundle": str(tmp_path / "bundle.jws")}


def run(files: dict[str, str], *args: str, now: Any = AT, **kw: Any) -> Any:
    base = ["verify", "--root", files["root"], "--now", str(int(now.timestamp()))]
    if "--bundle" not in args and "--state" not in args:
        base += ["--bundle", files["bundle"]]
    return RUNNER.invoke(app, [*base, *args], **kw)


def test_valid_exit_0_with_the_purposes_claims(files: dict[str, str]) -> None:
    result = run(files, qr(), "--purpose", "transport")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:3] == [
        "VALID  transport",
        "  concession: 1",
        "  concession_until: 2030-06-30",
    ]
    assert "bundle version 1, 1 min old" in result.output


def test_json_output(files: dict[str, str]) -> None:
    result = run(files, qr(), "--purpose", "transport", "--json")
    view = json.loads(result.output)
    assert view["verdict"] == "valid" and view["bundle"]["age_seconds"] == 65
    assert view["claims"] == {"concession": 1, "concession_until": "2030-06-30"}


@pytest.mark.parametrize(
    ("text", "purpose", "reason"),
    [
        (lambda: qr(Purpose.IDENTITY), "transport", "purpose"),
        (lambda: qr(idx=7), "transport", "revoked"),
        (lambda: qr(idx=4321), "transport", "suspended"),
        (lambda: "SSC1:NOT-A-TOKEN", "transport", "decode-error"),
        (lambda: G.build()["qr-token/wrong-purpose-key.json"]["input"], "identity", "key-purpose"),
    ],
    ids=["wrong-purpose", "revoked", "suspended", "malformed", "wrong-key"],
)
def test_invalid_exit_1_with_reason(
    files: dict[str, str], text: Any, purpose: str, reason: str
) -> None:
    result = run(files, text(), "--purpose", purpose, "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["reason"] == reason


def test_expired_exit_1(files: dict[str, str]) -> None:
    result = run(files, qr(), "--purpose", "transport", now=G.NOW + timedelta(minutes=2))
    assert result.exit_code == 1
    assert "reason: expired" in result.output


def test_stale_bundle_exit_2(files: dict[str, str]) -> None:
    result = run(files, qr(), "--purpose", "transport", "--max-age", "30")
    assert result.exit_code == 2
    assert result.output.startswith("STATUS UNKNOWN  transport\n  reason: stale-bundle")


def test_clock_rollback_exit_2_across_runs(files: dict[str, str], tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert run(files, qr(), "--purpose", "transport", "--state", state,
               "--bundle", files["bundle"]).exit_code == 0  # fmt: skip
    early = run(files, qr(), "--purpose", "transport", "--state", state,
                now=G.NOW - timedelta(hours=2))  # fmt: skip
    assert early.exit_code == 2
    assert "clock-rollback" in early.output


def test_a_code_is_replayed_across_runs_as_of_a_past_time(
    files: dict[str, str], tmp_path: Path
) -> None:
    """``--now`` in the past (AT is days before the wall clock): the replay memory kept in
    ``--state`` follows that time, not the wall clock, when the second run loads it."""
    state, text = str(tmp_path / "state"), qr()
    first = run(files, text, "--purpose", "transport", "--state", state, "--bundle",
                files["bundle"])  # fmt: skip
    assert first.exit_code == 0, first.output
    second = run(files, text, "--purpose", "transport", "--state", state, "--json")
    assert second.exit_code == 1, second.output
    assert json.loads(second.stdout)["reason"] == "replayed"


def test_replay_protection_is_on_by_default(files: dict[str, str], tmp_path: Path) -> None:
    text = qr()
    assert run(files, text, "--purpose", "transport").exit_code == 0
    again = run(files, text, "--purpose", "transport", "--json")
    assert again.exit_code == 1, again.output
    assert json.loads(again.stdout)["reason"] == "replayed"
    kept = tmp_path / "xdg-state" / "cardsvc-verify"
    assert {p.name for p in kept.iterdir()} == {STATE_FILE, REPLAY_FILE, LOCK_FILE}
    assert kept.stat().st_mode & 0o777 == 0o700  # e-card references: this user's only
    assert not (tmp_path / "home").exists()


def test_the_default_state_without_xdg_is_under_the_home(
    files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_STATE_HOME")
    text = qr()
    assert run(files, text, "--purpose", "transport").exit_code == 0
    assert (tmp_path / "home/.local/state/cardsvc-verify" / REPLAY_FILE).is_file()
    assert run(files, text, "--purpose", "transport").exit_code == 1


def test_the_state_directory_from_the_environment_and_from_state(
    files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARDSVC_VERIFY_STATE", str(tmp_path / "gate"))
    text = qr()
    assert run(files, text, "--purpose", "transport").exit_code == 0
    assert (tmp_path / "gate" / REPLAY_FILE).is_file()
    # --state wins over the environment: this directory has not seen the code.
    assert run(files, text, "--purpose", "transport", "--state", str(tmp_path / "other"),
               "--bundle", files["bundle"]).exit_code == 0  # fmt: skip
    assert run(files, text, "--purpose", "transport").exit_code == 1
    assert not (tmp_path / "xdg-state").exists()


def test_no_state_says_what_it_gives_up(
    files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARDSVC_VERIFY_STATE", str(tmp_path / "gate"))  # --no-state wins
    text = qr()
    for _ in range(2):  # the opt-out: a code shown twice is accepted twice
        result = run(files, text, "--purpose", "transport", "--no-state")
        assert result.exit_code == 0, result.output
        assert "no replay protection" in result.stderr
        assert "no rollback protection across runs" in result.stderr
    assert not any((tmp_path / d).exists() for d in ("gate", "xdg-state", "home"))
    both = run(files, text, "--purpose", "transport", "--no-state", "--state", "s")
    assert both.exit_code == 3 and "--no-state" in both.stderr


def test_rejected_bundle_keeps_the_previous_one(files: dict[str, str], tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    newer = tmp_path / "v2.jws"
    newer.write_text(make_bundle(version=2, iat=timedelta(seconds=30)))
    assert run(files, qr(), "--purpose", "transport", "--state", state,
               "--bundle", str(newer)).exit_code == 0  # fmt: skip
    for bad in (make_bundle(version=1), make_bundle(version=3, signer=G.OUTSIDER), "x.y"):
        path = tmp_path / "bad.jws"
        path.write_text(bad)
        result = run(files, qr(), "--purpose", "transport", "--state", state, "--bundle",
                     str(path), "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "bundle rejected" in result.stderr and "keeping version 2" in result.stderr
        assert json.loads(result.stdout)["bundle"]["version"] == 2


def test_rejected_bundle_without_a_previous_one_is_status_unknown(
    files: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "foreign.jws"
    path.write_text(make_bundle(signer=G.OUTSIDER))
    result = run(files, qr(), "--purpose", "transport", "--bundle", str(path))
    assert result.exit_code == 2
    assert "no-bundle" in result.stdout and "key-unknown" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--purpose", "parking"],
        ["--purpose", "transport", "--bundle", "/nonexistent/bundle"],
        ["--purpose", "transport", "--image", "/nonexistent.png"],
        ["--purpose", "transport", "--no-such-option"],
    ],
)
def test_usage_and_input_errors_exit_3(files: dict[str, str], args: list[str]) -> None:
    assert run(files, qr(), *args).exit_code == 3


def test_stdin_and_documented_exit_codes_in_a_real_process(
    files: dict[str, str], tmp_path: Path
) -> None:
    common = ["verify", "--root", files["root"], "--bundle", files["bundle"], "--purpose"]
    now = ["--now", str(int(AT.timestamp()))]
    ok = subprocess.run(
        [CARDSVC, *common, "transport", *now], input=qr() + "\n", capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    usage = subprocess.run([CARDSVC, "verify", "--bogus"], capture_output=True, check=False)
    assert usage.returncode == 3
    help_text = subprocess.run(
        [CARDSVC, "verify", "--help"], capture_output=True, text=True, check=False
    ).stdout
    for line in ("0  valid", "1  invalid", "2  status unknown", "3  usage or input error"):
        assert line in help_text


def test_runs_at_once_on_one_state_accept_a_code_once(
    files: dict[str, str], tmp_path: Path
) -> None:
    """Eight real processes given one code at the same moment: one valid, seven replayed.
    Without the state directory's lock each run loaded the replay memory before any had
    saved it, and several accepted the code."""
    state, text = str(tmp_path / "state"), qr()
    first = run(files, qr(), "--purpose", "transport", "--state", state,
                "--bundle", files["bundle"])  # fmt: skip
    assert first.exit_code == 0, first.output  # the bundle is kept in the state
    command = [CARDSVC, "verify", "--root", files["root"], "--state", state, "--purpose",
               "transport", "--now", str(int(AT.timestamp())), "--json", text]  # fmt: skip
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(8)]  # fmt: skip
    answers = [proc.communicate(timeout=120) for proc in runs]
    outcomes = sorted(
        (proc.returncode, json.loads(out).get("reason"))
        for proc, (out, _) in zip(runs, answers, strict=True)
    )
    assert outcomes == [(0, None)] + [(1, "replayed")] * 7, answers


def test_image_decoded_with_zxing(files: dict[str, str], tmp_path: Path) -> None:
    text = qr()
    image = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    image.add_data(text)
    image.make(fit=True)
    png = tmp_path / "qr.png"
    image.make_image().save(str(png))
    result = run(files, "--purpose", "transport", "--image", str(png))
    assert result.exit_code == 0, result.output
    blank = tmp_path / "blank.png"
    blank.write_bytes(png.read_bytes()[:40])
    assert run(files, "--purpose", "transport", "--image", str(blank)).exit_code == 3

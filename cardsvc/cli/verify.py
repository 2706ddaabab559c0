"""``cardsvc verify``: a partner's offline check of one QR token.

Only the command line lives here; the verification is :class:`cardsvc.core.verifier.
OfflineVerifier`, which partners embed with the three core dependencies. This module
imports nothing of the issuer (no FastAPI, SQLAlchemy, pydantic): with
``pip install 'cardsvc[partner]'`` it runs as ``cardsvc verify`` or ``cardsvc-verify``
(:mod:`cardsvc.cli.partner`), and fetches bundles with the standard library only.

Replay and rollback protection are on by default: the state (the last good bundle, the
newest signed time, the replay memory) is kept in ``--state DIR``, else
``$CARDSVC_VERIFY_STATE``, else a per-user directory (:func:`default_state_dir`).
``--no-state`` opts out and says on stderr what that gives up.

A bundle from an URL is fetched as a delta on the one held in the state directory
(``?since=<held version>&delta=entries``, ``If-None-Match`` with the ETag it came with):
changed shards come as their changed entries when that is smaller. A 304 keeps the held
bundle; a delta that does not apply (another base, an entry patch that does not rebuild
the issuer's list) is followed by a full bundle. A fetch that fails keeps the held bundle
too, and says so on stderr.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from cardsvc.core.credential import disclosed_claims
from cardsvc.core.errors import CoreError
from cardsvc.core.fetch import BundleFetcher, RefreshOutcome
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.qrtoken import Purpose
from cardsvc.core.verifier import (
    DEFAULT_MAX_AGE,
    OfflineVerifier,
    Outcome,
    Verdict,
)


class ExitCode(IntEnum):
    """``cardsvc verify`` exit status."""

    VALID = 0
    INVALID = 1
    STATUS_UNKNOWN = 2  # stale or missing bundle, unknown shard, clock rollback
    USAGE = 3  # bad options, unreadable input, no QR code in the image


_EXIT = {
    Outcome.VALID: ExitCode.VALID,
    Outcome.INVALID: ExitCode.INVALID,
    Outcome.STATUS_UNKNOWN: ExitCode.STATUS_UNKNOWN,
}


class InputError(Exception):
    """The command's input could not be read (exit status 3)."""


#: The state directory when ``--state`` is not given (before the per-user default).
STATE_ENV = "CARDSVC_VERIFY_STATE"
NO_STATE_WARNING = (
    "warning: --no-state: no replay protection (a code already used is accepted again) "
    "and no rollback protection across runs (an older bundle or a clock set back is not "
    "noticed); nothing is kept"
)


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/cardsvc-verify``, else ``~/.local/state/cardsvc-verify``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG base directory spec says.
    """
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "cardsvc-verify"
    try:
        home = Path.home()
    except RuntimeError:
        raise InputError(
            "no home directory for the replay memory: give --state DIR (or --no-state)"
        ) from None
    return home / ".local" / "state" / "cardsvc-verify"


def _state_dir(state: Path | None, no_state: bool) -> Path | None:
    """Where to keep the state: ``--state``, the environment, the per-user default."""
    if no_state:
        if state is not None:
            raise InputError("give --state or --no-state, not both")
        typer.echo(NO_STATE_WARNING, err=True)
        return None
    if state is not None:
        return state
    chosen = Path(os.environ[STATE_ENV]) if os.environ.get(STATE_ENV) else default_state_dir()
    # Only this user's: the replay memory holds e-card references of who passed the gate.
    chosen.mkdir(mode=0o700, parents=True, exist_ok=True)
    return chosen


#: Held while a run reads and writes the state directory: two runs loading one replay
#: memory at once would both accept the same code.
LOCK_FILE = "verify.lock"
#: How long a run waits for another run on the same state directory.
LOCK_WAIT_SECONDS = 30.0


@contextmanager
def _exclusive(state: Path | None) -> Iterator[None]:
    """One run at a time per state directory (runs elsewhere are not held up)."""
    if state is None:
        yield
        return
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(state / LOCK_FILE, "ab") as handle:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputError(
                        f"another cardsvc verify has held {state} for {LOCK_WAIT_SECONDS:g} s"
                    ) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's UsageError: typer >= 0.20 vendors click as ``typer._click``."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_USAGE_ERRORS = _usage_error_types()


class VerifyCommand(TyperCommand):
    """Usage errors exit 3, not click's 2 (2 means "status unknown" here)."""

    def make_context(self, *args: Any, **extra: Any) -> Any:
        try:
            return super().make_context(*args, **extra)
        except _USAGE_ERRORS as exc:
            error: Any = exc
            error.exit_code = int(ExitCode.USAGE)
            raise


def _read_root(value: str) -> VerifyingKey:
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    jwk = json.loads(text)
    if not isinstance(jwk, dict):
        raise InputError("--root must be a JWK (a JSON object)")
    return VerifyingKey.from_jwk(jwk)


def _is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def _read_bundle_file(source: str) -> str:
    return Path(source).read_text(encoding="ascii").strip()


def _keeping(verifier: OfflineVerifier) -> str:
    kept = verifier.bundle
    return f"keeping version {kept.version}" if kept else "no previous bundle"


def _update(verifier: OfflineVerifier, token: str, now: datetime | None) -> None:
    """Apply ``token``; a refused bundle is said on stderr and the held one kept."""
    try:
        verifier.update(token, now=now)
    except CoreError as exc:
        typer.echo(f"bundle rejected: {exc.detail} ({_keeping(verifier)})", err=True)


def _update_from_url(
    verifier: OfflineVerifier, url: str, state: Path | None, now: datetime | None
) -> None:
    refresh = BundleFetcher(verifier, url, state_dir=state).refresh(now=now)
    if refresh.outcome is RefreshOutcome.UPDATED:
        typer.echo(f"bundle {refresh.detail}", err=True)
    elif refresh.outcome is RefreshOutcome.UNCHANGED:
        typer.echo(f"bundle unchanged ({refresh.detail}), {_keeping(verifier)}", err=True)
    elif refresh.outcome is RefreshOutcome.REFUSED:
        typer.echo(f"{refresh.detail} ({_keeping(verifier)})", err=True)
    else:
        typer.echo(f"bundle fetch failed: {refresh.detail} ({_keeping(verifier)})", err=True)


def decode_image(path: Path) -> str:
    """The text of the one QR code in a PNG or JPEG (zxing-cpp, ``cardsvc[partner]``)."""
    try:
        import zxingcpp
        from PIL import Image
    except ImportError:  # pragma: no cover - the partner extra is not installed
        raise InputError(
            "--image needs zxing-cpp and Pillow: pip install 'cardsvc[partner]'"
        ) from None
    try:
        with Image.open(path) as image:
            image.load()
            gray = image.convert("L")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None
    found = zxingcpp.read_barcodes(
        gray, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    if not found:
        raise InputError(f"no QR code found in {path}")
    if len(found) > 1:
        raise InputError(f"{len(found)} QR codes in {path}; show one")
    return str(found[0].text)


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    parsed = datetime.fromisoformat(value)
    if parsed.utcoffset() is None:
        raise InputError("--now needs a time zone (e.g. 2026-01-01T08:00:00Z) or epoch seconds")
    return parsed.astimezone(UTC)


def _human_age(age: timedelta) -> str:
    minutes = int(age.total_seconds()) // 60
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


def _print_verdict(verdict: Verdict) -> None:
    label = {"valid": "VALID", "invalid": "INVALID", "status-unknown": "STATUS UNKNOWN"}
    head = label[verdict.outcome.value]
    if verdict.purpose is not None:
        head += f"  {verdict.purpose.name.lower()}"
    typer.echo(head)
    if verdict.reason:
        typer.echo(f"  reason: {verdict.reason}: {verdict.detail}")
    for name, value in disclosed_claims(verdict.claims).items():
        typer.echo(f"  {name}: {value}")
    if verdict.bundle_version is not None and verdict.bundle_age is not None:
        typer.echo(f"bundle version {verdict.bundle_version}, {_human_age(verdict.bundle_age)} old")


def verify(
    text: Annotated[
        str | None,
        typer.Argument(help="The QR text (SSC1:... or SSC2:...); '-' or omitted: stdin"),
    ] = None,
    purpose: Annotated[
        str,
        typer.Option(
            help="What you verify for: " + ", ".join(p.name.lower() for p in Purpose),
            show_default=False,
        ),
    ] = "",
    root: Annotated[
        str,
        typer.Option(help="The issuer's root public key: a JWK file, or the JWK itself"),
    ] = "",
    bundle: Annotated[
        str | None,
        typer.Option(help="Verifier bundle: a file or an http(s) URL (compact JWS)"),
    ] = None,
    image: Annotated[
        Path | None, typer.Option(help="Read the QR code from a PNG or JPEG image")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Directory that keeps the last good bundle, the newest signed time and "
            "the replay memory (rollback and replay protection across runs; URL bundles "
            f"are fetched as deltas). Default: ${STATE_ENV}, else "
            "$XDG_STATE_HOME/cardsvc-verify or ~/.local/state/cardsvc-verify",
            show_default=False,
        ),
    ] = None,
    no_state: Annotated[
        bool,
        typer.Option(
            "--no-state",
            help="Keep nothing: no replay protection (a code already used is accepted "
            "again), no rollback protection across runs",
        ),
    ] = False,
    max_age: Annotated[
        int,
        typer.Option(help="Seconds after which the bundle is stale (status unknown)"),
    ] = int(DEFAULT_MAX_AGE.total_seconds()),
    now: Annotated[
        str | None,
        typer.Option(help="Verify as of this time (ISO 8601 or epoch seconds; vectors, tests)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON")] = False,
) -> None:
    """Verify an e-card QR token offline for one purpose, against a verifier bundle.

    Takes issuer-minted tokens (SSC1:) and device-bound ones a phone made offline (SSC2:).

    Prints the verdict, the claims that purpose discloses, the bundle's age, and the
    reason on failure.

    Replay and rollback protection across runs are on by default (see --state);
    --no-state turns them off.

    \b
    Exit status:
      0  valid
      1  invalid (forged, expired, replayed, wrong purpose, revoked, malformed ...)
      2  status unknown (no or stale bundle, unknown shard, clock before a signed time,
         replay memory lost for a code made before a restart)
      3  usage or input error (bad options, unreadable file or image, no QR code)
    """
    try:
        code = _run(text, purpose, root, bundle, image, state, no_state, max_age, now, as_json)
    except (InputError, CoreError, OSError, ValueError, UnicodeError) as exc:
        typer.echo(f"error: {getattr(exc, 'detail', exc)}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    raise typer.Exit(code)


def _run(
    text: str | None,
    purpose_name: str,
    root: str,
    bundle: str | None,
    image: Path | None,
    state_option: Path | None,
    no_state: bool,
    max_age: int,
    now_text: str | None,
    as_json: bool,
) -> ExitCode:
    try:
        purpose = Purpose[purpose_name.upper()]
    except KeyError:
        raise InputError(
            f"--purpose must be one of {', '.join(p.name.lower() for p in Purpose)}"
        ) from None
    if not root:
        raise InputError("--root is required (the issuer's root public key, pinned)")
    if bundle is None and no_state:
        raise InputError("give --bundle: with --no-state no bundle is kept from an earlier run")
    if image is not None and text not in (None, "-"):
        raise InputError("give the QR text or --image, not both")
    state = _state_dir(state_option, no_state)
    now = _parse_now(now_text)
    if image is not None:
        qr_text = decode_image(image)
    elif text is None or text == "-":
        qr_text = sys.stdin.read().strip()
    else:
        qr_text = text.strip()
    with _exclusive(state):
        return _verify_in(state, qr_text, purpose, root, bundle, max_age, now, as_json)


def _verify_in(
    state: Path | None,
    qr_text: str,
    purpose: Purpose,
    root: str,
    bundle: str | None,
    max_age: int,
    now: datetime | None,
    as_json: bool,
) -> ExitCode:
    verifier = OfflineVerifier(
        _read_root(root), state_dir=state, max_age=timedelta(seconds=max_age)
    )
    if verifier.replay_memory_problem is not None:
        typer.echo(
            f"replay memory rebuilt: {verifier.replay_memory_problem}; codes made before "
            "now answer status unknown (replay-unknown) until they expire",
            err=True,
        )
    if bundle is not None and _is_url(bundle):
        _update_from_url(verifier, bundle, state, now)
    elif bundle is not None:
        _update(verifier, _read_bundle_file(bundle), now)
    verdict = verifier.verify(qr_text, purpose=purpose, now=now)
    if as_json:
        typer.echo(json.dumps(verdict.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_verdict(verdict)
    return _EXIT[verdict.outcome]

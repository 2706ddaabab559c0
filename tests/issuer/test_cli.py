"""The `cardsvc` command as an operator runs it: a real process, real files, real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from cardsvc.core.keys import VerifyingKey
from cardsvc.core.trustlist import TrustList
from cardsvc.services import utcnow

CARDSVC = shutil.which("cardsvc", path=str(Path(sys.executable).parent)) or "cardsvc"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env.update(
        CARDSVC_KEY_DIR=str(tmp_path / "keys"),
        CARDSVC_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        **extra,
    )
    return env


def cardsvc(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CARDSVC, *args],
        env=env_for(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_explains_every_command(tmp_path: Path) -> None:
    out = cardsvc(tmp_path, "--help").stdout
    for command in ("run", "serve", "keys", "db"):
        assert command in out
    keys_help = cardsvc(tmp_path, "keys", "--help").stdout
    for command in ("init", "list", "rotate", "export-trust-list", "export-jwks"):
        assert command in keys_help


def test_keys_lifecycle_through_the_cli(tmp_path: Path) -> None:
    locked = cardsvc(tmp_path, "keys", "init")
    assert locked.returncode == 1
    assert "CARDSVC_KEY_PASSPHRASE" in locked.stderr
    assert "Traceback" not in locked.stderr

    pass_file = tmp_path / "passphrase"
    pass_file.write_text("a long passphrase\n")
    env = {"CARDSVC_KEY_PASSPHRASE_FILE": str(pass_file)}
    init = cardsvc(tmp_path, "keys", "init", **env)
    assert init.returncode == 0, init.stderr
    assert init.stdout.count("created") == 7
    assert "a long passphrase" not in init.stdout + init.stderr

    listing = cardsvc(tmp_path, "keys", "list")  # public metadata needs no passphrase
    assert listing.returncode == 0 and listing.stdout.count("\n") == 7

    rotate = cardsvc(tmp_path, "keys", "rotate", "ecard", **env)
    assert rotate.returncode == 0, rotate.stderr
    assert "retiring" in rotate.stdout
    bad_purpose = cardsvc(tmp_path, "keys", "rotate", "coffee", **env)
    assert bad_purpose.returncode != 0 and "Traceback" not in bad_purpose.stderr

    root = VerifyingKey.from_jwk(json.loads(cardsvc(tmp_path, "keys", "export-root").stdout))
    token = cardsvc(tmp_path, "keys", "export-trust-list", **env).stdout.strip()
    trust_list = TrustList.verify(token, root=root, now=utcnow(), leeway=timedelta(seconds=5))
    assert len(trust_list.keys) == 7  # six purposes plus the pending e-card key

    jwks = json.loads(cardsvc(tmp_path, "keys", "export-jwks").stdout)
    assert {k["kid"] for k in jwks["keys"]} == {k.key.kid for k in trust_list.keys}

    wrong = cardsvc(tmp_path, "keys", "export-trust-list", CARDSVC_KEY_PASSPHRASE="nope")
    assert wrong.returncode == 1
    assert "passphrase does not decrypt" in wrong.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    assert cardsvc(tmp_path, "keys", "init", CARDSVC_DEV_MODE="1").returncode == 0
    result = cardsvc(tmp_path, "serve")
    assert result.returncode == 1
    assert "run `cardsvc db upgrade`" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_run_sets_up_and_serves_on_sqlite_with_fresh_keys(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [CARDSVC, "run", "--port", str(port)],
        env=env_for(tmp_path, CARDSVC_DEV_MODE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if f"listening on http://127.0.0.1:{port}" in line or not line:
                break
        assert any(f"http://127.0.0.1:{port}" in line for line in lines), "".join(lines)
        assert any("development mode" in line for line in lines)
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = json.load(r)
            except OSError:
                time.sleep(0.2)
        assert body is not None and body["status"] == "ok"
        assert (tmp_path / "keys" / "index.json").exists()
        assert (tmp_path / "db.sqlite").exists()

        # The run prints how to get a token for the demo admin; doing so works end to end.
        hint = next(line for line in lines if "cardsvc clients token" in line).split()
        token = cardsvc(tmp_path, *hint[1:], CARDSVC_DEV_MODE="1")
        assert token.returncode == 0, token.stderr
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/persons",
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:  # noqa: S310 - our own server
            assert r.status == 200
            assert json.load(r)["items"] == []
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("cardsvc run did not stop on Ctrl-C")
    assert process.returncode == 0

"""The reader-agent CLI end to end: `emulate` as a subprocess in slot 1, a cardsvc file key
store as the development signer (`python -m demo.personalize`), `cache update` (the verifier
bundle over HTTP from a stand-in for GET /v1/bundles/latest), `check`,
`pin change|unblock`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.statuslist import StatusList, encode_status_list_jwt
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.service import KeyPolicy, KeyService
from demo.personalize import app as personalize_app
from reader_agent.cli import app
from tests.agent.world import emulator_process

pytestmark = pytest.mark.pcscd

READER = "Virtual PCD 00 01"
PASSPHRASE = "test-passphrase"
STATUS_URI = "https://issuer.test/v1/status-lists/3"


@pytest.fixture
def emulator(tmp_path: Path, pcscd: object) -> Iterator[Path]:
    """`reader-agent emulate --slot 1` as a subprocess; yields its state file."""
    with emulator_process(1, tmp_path / "card.json") as state:
        yield state


@pytest.fixture
def issuer_keys(tmp_path: Path) -> tuple[Path, KeyService]:
    key_dir = tmp_path / "keys"
    keys = KeyService(
        FileKeyBackend(key_dir, PASSPHRASE.encode()), KeyPolicy(), issuer="https://issuer.test"
    )
    keys.init(now=datetime.now(UTC) - timedelta(minutes=1))
    return key_dir, keys


def _serve(body: str) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/v1/bundles/latest":
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/verifier-bundle+jwt")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_cli_personalize_cache_check_and_pin(
    emulator: Path, issuer_keys: tuple[Path, KeyService], tmp_path: Path
) -> None:
    key_dir, keys = issuer_keys
    now = datetime.now(UTC)
    runner = CliRunner()
    env = {"CARDSVC_KEY_PASSPHRASE": PASSPHRASE}

    done = runner.invoke(
        personalize_app,
        [
            "--reader", READER,
            "--key-dir", str(key_dir),
            "--issuer", "https://issuer.test",
            "--card-number", "B87654321",
            "--citizen-id", "440524188001010014",
            "--name", "李四",
            "--status-uri", STATUS_URI,
            "--status-idx", "5",
        ],
        input="123456\n123456\n87654321\n87654321\n",
        env=env,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "personalised and locked" in done.output
    assert "123456" not in done.output.replace("B87654321", "")  # the PIN is never echoed

    root = tmp_path / "root.jwk"
    root.write_text(json.dumps(keys.root_key().jwk()))
    signer = keys.signer(KeyPurpose.STATUS_LIST, now=now)
    status_list = encode_status_list_jwt(
        StatusList.new(1024, bits=2), sub=STATUS_URI, iat=now, exp=now + timedelta(days=1),
        ttl=300, signer=signer,
    )  # fmt: skip
    bundle = encode_bundle(
        issuer="https://issuer.test", version=1, issued_at=now, expires_at=now + timedelta(days=1),
        base=None, trust_list=keys.issue_trust_list(now=now),
        status_lists={STATUS_URI: status_list}, signer=signer,
    )  # fmt: skip
    server, base = _serve(bundle)
    cache = tmp_path / "cache"
    try:
        done = runner.invoke(
            app,
            ["cache", "update", "--issuer", base, "--root", str(root),
             "--cache-dir", str(cache)],
        )  # fmt: skip
    finally:
        server.shutdown()
    assert done.exit_code == 0, done.output
    assert "trust list sequence" in done.output
    assert "1 status lists" in done.output

    check = ["check", "--reader", READER, "--cache-dir", str(cache)]
    done = runner.invoke(app, check, input="123456\n")
    assert done.exit_code == 0, done.output
    assert "verdict: GENUINE" in done.output
    assert "B87654321" in done.output

    done = runner.invoke(app, check, input="999999\n")
    assert done.exit_code == 2
    assert "verdict: PIN-FAILED" in done.output and "2 tries left" in done.output

    done = runner.invoke(
        app, ["pin", "change", "--reader", READER], input="123456\n24682468\n24682468\n"
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(
        app, ["pin", "unblock", "--reader", READER], input="87654321\n135790\n135790\n"
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, check, input="135790\n")
    assert done.exit_code == 0, done.output

    done = runner.invoke(app, ["readers"])
    assert "3B 80 80 01 01" in done.output

    # The state file is private: keys and PIN hashes.
    assert emulator.stat().st_mode & 0o777 == 0o600

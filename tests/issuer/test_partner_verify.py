"""A partner's ``cardsvc verify``: without the issuer's packages, and against a live issuer.

The subprocess tests refuse, through an import hook, every package of the ``issuer``
extra that the ``partner`` extra does not bring (``pydantic`` comes with typer >= 0.2x,
so it is refused only where typer does not need it; cardsvc's own code must import it
never). The live tests run a real issuer under uvicorn and follow what the CLI asks over
HTTP: a full bundle, then ``?since=`` deltas with ``If-None-Match``, and 304s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request, Response
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cardsvc.api.app import create_app
from cardsvc.cli.partner import verify_app
from cardsvc.core.fetch import FETCH_FILE, with_since
from cardsvc.core.keys import b64url_decode
from cardsvc.core.verifier import STATE_FILE, OfflineVerifier
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import registry_services
from tests.live import free_port, serving

VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "vectors"
ISSUER_ONLY = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings",
               "psycopg", "redis", "qrcode", "httpx"]  # fmt: skip

# Runs a cardsvc entry point with the issuer's packages refused; reports on stderr what
# was refused, and who imported pydantic when it is allowed.
WRAPPER = r"""
import importlib.abc, json, sys
blocked, entry, *args = sys.argv[1:]
BLOCKED = set(json.loads(blocked))
refused, pydantic_importers = [], set()

class RefuseIssuerPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in BLOCKED:
            refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (partner install)", name=name)
        if top == "pydantic":
            frame = sys._getframe(1)
            skip = ("importlib", "_frozen")
            while frame and frame.f_globals.get("__name__", "").startswith(skip):
                frame = frame.f_back
            pydantic_importers.add(frame.f_globals.get("__name__", "?") if frame else "?")
        return None

sys.meta_path.insert(0, RefuseIssuerPackages())
import atexit
atexit.register(lambda: sys.stderr.write(
    "\nIMPORTS " + json.dumps({"refused": refused, "pydantic": sorted(pydantic_importers)}) + "\n"))
sys.argv = [entry, *args]
from cardsvc.cli import partner
getattr(partner, entry)()
"""


def blocked_packages() -> list[str]:
    typer_needs = {r.split(";")[0].split(">")[0].split("=")[0].strip().lower()
                   for r in metadata.requires("typer") or []}  # fmt: skip
    return ISSUER_ONLY + ([] if "pydantic" in typer_needs else ["pydantic"])


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    imports: dict[str, list[str]]


def partner_run(entry: str, *args: str, cwd: Path, stdin: str | None = None) -> Run:
    """Run ``partner.<entry>`` (``main``: ``cardsvc``; ``verify_main``: ``cardsvc-verify``)."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", WRAPPER, json.dumps(blocked_packages()), entry, *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    stderr, _, tail = done.stderr.rpartition("\nIMPORTS ")
    return Run(done.returncode, done.stdout, stderr, json.loads(tail))


def assert_partner_only(run: Run) -> None:
    assert run.imports["refused"] == [], run.imports
    assert not any(m.startswith("cardsvc") for m in run.imports["pydantic"]), run.imports


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default state directory of ``cardsvc verify`` (the processes inherit these)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("CARDSVC_VERIFY_STATE", raising=False)


@pytest.fixture
def vector_files(tmp_path: Path) -> dict[str, str]:
    full = json.loads((VECTORS / "bundle/valid-full.json").read_text())
    (tmp_path / "root.jwk").write_text(json.dumps(full["root_jwk"]))
    (tmp_path / "bundle.jws").write_text(full["input"])
    return {"root": "root.jwk", "bundle": "bundle.jws", "now": str(full["now"])}


def test_cardsvc_verify_runs_without_the_issuers_packages(
    tmp_path: Path, vector_files: dict[str, str]
) -> None:
    f = vector_files
    common = ["--root", f["root"], "--bundle", f["bundle"], "--now", f["now"], "--purpose",
              "transport"]  # fmt: skip
    ssc2 = json.loads((VECTORS / "device-bound/transport-valid.json").read_text())["input"]
    valid = partner_run("main", "verify", *common, "-", cwd=tmp_path, stdin=ssc2 + "\n")
    assert valid.code == 0, valid.stderr
    assert valid.stdout.startswith("VALID  transport\n  concession: 1\n")
    assert_partner_only(valid)
    # Replay protection by default: the same code in another run is refused.
    again = partner_run("verify_main", *common, ssc2, cwd=tmp_path)
    assert again.code == 1 and "reason: replayed" in again.stdout, again.stderr
    assert_partner_only(again)

    ssc1 = json.loads((VECTORS / "qr-token/transport-valid.json").read_text())["input"]
    suspended = partner_run("verify_main", *common, "--json", ssc1, cwd=tmp_path)
    assert suspended.code == 1, suspended.stderr
    assert json.loads(suspended.stdout)["reason"] == "suspended"
    assert_partner_only(suspended)

    usage = partner_run("main", "verify", "--bogus", cwd=tmp_path)
    assert usage.code == 3
    assert_partner_only(usage)


def test_the_hook_does_refuse_the_issuers_commands(tmp_path: Path) -> None:
    """The control: an issuer command in the same harness needs what is refused."""
    run = partner_run("main", "keys", "list", cwd=tmp_path)
    assert run.code == 3
    assert "pip install 'cardsvc[issuer]'" in run.stderr
    assert run.imports["refused"]


def test_with_since_keeps_other_parameters() -> None:
    url = "https://issuer.test/v1/bundles/latest?shard=0&since=3"
    assert with_since(url, 7) == "https://issuer.test/v1/bundles/latest?shard=0&since=7"
    assert with_since(url, None) == "https://issuer.test/v1/bundles/latest?shard=0"


# -- against a live issuer -----------------------------------------------------------------


@dataclass
class LiveIssuer:
    base: str
    services: Services
    client: TestClient
    bundle_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bundle_url(self) -> str:
        return f"{self.base}/v1/bundles/latest"


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[LiveIssuer]:
    port = free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'issuer.db'}",
        key_dir=tmp_path / "keys",
        key_passphrase="partner verify test",  # type: ignore[arg-type]
    )
    services = registry_services(settings)
    app = create_app(services.settings, services=services)
    live = LiveIssuer(
        base=services.settings.issuer,
        services=services,
        client=TestClient(create_app(services.settings, services=services)),
    )

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        response = await call_next(request)
        if request.url.path == "/v1/bundles/latest":
            live.bundle_requests.append({
                "query": request.url.query,
                "if_none_match": request.headers.get("if-none-match"),
                "status": response.status_code,
                "bytes": int(response.headers.get("content-length", 0)),
            })  # fmt: skip
        return response

    try:
        with serving(app, port):
            yield live
    finally:
        services.engine.dispose()


def claims(token: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return parsed


def test_updates_are_deltas_and_304s_against_a_live_issuer(
    issuer: LiveIssuer, tmp_path: Path
) -> None:
    client, services = issuer.client, issuer.services
    holder = active_holder(client, services)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    codes = [mint(client, services, ecard["ecard_id"], phone).json()["tokens"][0]["token"]
             for _ in range(4)]  # fmt: skip
    root = tmp_path / "root.jwk"
    root.write_text(json.dumps(services.keys.root_key().jwk()))
    state = tmp_path / "gate"
    runner = CliRunner()

    def gate(code: str) -> Any:
        args = ["--root", str(root), "--bundle", issuer.bundle_url, "--state", str(state),
                "--purpose", "transport", "--json", code]  # fmt: skip
        return runner.invoke(verify_app, args)

    first = gate(codes[0])
    assert first.exit_code == 0, (first.stdout, first.stderr)
    version = json.loads(first.stdout)["bundle"]["version"]
    assert f"bundle version {version} (full," in first.stderr
    full_request = issuer.bundle_requests[-1]
    assert (full_request["query"], full_request["status"]) == ("", 200)
    etag = json.loads((state / FETCH_FILE).read_text())["etag"]

    # Nothing changed: the gate asks for a delta with the held ETag and gets a 304.
    second = gate(codes[1])
    assert second.exit_code == 0, (second.stdout, second.stderr)
    assert "bundle unchanged (304 not modified)" in second.stderr
    asked = issuer.bundle_requests[-1]
    assert asked == {"query": f"since={version}&delta=entries", "if_none_match": etag,
                     "status": 304, "bytes": 0}  # fmt: skip

    # The holder reports the card lost: the next update is a delta from the held version.
    path = f"/v1/ecards/{ecard['ecard_id']}/loss-report"
    lost = client.post(path, json={}, headers={"DPoP": phone.proof(services, client, "POST", path)})
    assert lost.status_code == 200, lost.json()
    third = gate(codes[2])
    assert third.exit_code == 1, (third.stdout, third.stderr)
    assert json.loads(third.stdout)["reason"] == "suspended"
    asked = issuer.bundle_requests[-1]
    assert (asked["query"], asked["status"]) == (f"since={version}&delta=entries", 200)
    chain = json.loads((state / STATE_FILE).read_text())["chain"]
    assert [claims(e["token"])["base"] for e in chain] == [None, version]
    # One entry changed: the delta carries that entry, not the shard's whole token.
    delta = claims(chain[1]["token"])
    assert delta["status_lists"] == {} and len(delta["status_patches"]) == 1
    ((uri, patch),) = delta["status_patches"].items()
    whole = claims(chain[0]["token"])["status_lists"][uri]
    assert len(json.dumps(patch)) < len(whole) // 4
    assert f"(delta from {version}, 1 shards patched by entry," in third.stderr
    kept = OfflineVerifier(services.keys.root_key(), state_dir=state)
    assert kept.bundle is not None and kept.bundle.base == version
    assert kept.bundle.patched == frozenset(delta["status_patches"])

    # Nothing new after the delta; and the first code, shown again after all these
    # restarts of the command, is a replay.
    fourth = gate(codes[0])
    assert fourth.exit_code == 1
    assert json.loads(fourth.stdout)["reason"] == "replayed"
    assert "bundle unchanged" in fourth.stderr
    assert issuer.bundle_requests[-1]["query"] == f"since={kept.bundle.version}&delta=entries"


def test_a_partner_install_fetches_over_http_with_urllib(
    issuer: LiveIssuer, tmp_path: Path
) -> None:
    client, services = issuer.client, issuer.services
    holder = active_holder(client, services)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    code = mint(client, services, ecard["ecard_id"], phone).json()["tokens"][0]["token"]
    (tmp_path / "root.jwk").write_text(json.dumps(services.keys.root_key().jwk()))
    args = ["--root", "root.jwk", "--bundle", issuer.bundle_url, "--state", "gate",
            "--purpose", "transport", code]  # fmt: skip
    run = partner_run("verify_main", *args, cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("VALID  transport")
    assert_partner_only(run)
    again = partner_run("main", "verify", *args, cwd=tmp_path)
    assert again.code == 1 and "reason: replayed" in again.stdout
    assert "bundle unchanged (304 not modified)" in again.stderr
    assert_partner_only(again)

"""js/verify, the TypeScript verifier: its build, its Node runs and its page in Chromium.

The package is built from source when its build output is missing or older than any
source file (nothing built is committed), with the Node tools ``./dev test`` installs from
``js/verify/package-lock.json``. The page is served from ``js/verify`` on 127.0.0.1 (a
secure context, so WebCrypto is there) and loads the minified bundle a static page would.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "js" / "verify"
VECTORS = ROOT / "schemas" / "vectors"
BUNDLE = PACKAGE / "dist" / "cardsvc-verify.min.js"
_SOURCES = (
    *("src", "test", "bench"),
    *("package.json", "package-lock.json", "build.mjs", "tsconfig.json"),
)


def node() -> str:
    found = shutil.which("node")
    if found is None:
        service_unavailable("node is not installed (./dev test installs nodejs)")
    assert found is not None
    return found


def _newest_source() -> float:
    newest = 0.0
    for name in _SOURCES:
        path = PACKAGE / name
        files = path.rglob("*") if path.is_dir() else [path]
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


@contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time across pytest-xdist workers (each would write the same dist/)."""
    with (ROOT / "js" / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@functools.cache
def built() -> Path:
    """Build js/verify unless its build output is newer than every source; the package dir."""
    if not (PACKAGE / "node_modules" / ".bin" / "esbuild").exists():
        service_unavailable("js/verify/node_modules is missing: run ./dev test (npm ci)")
    outputs = [BUNDLE, PACKAGE / "build" / "test" / "observe.js"]
    with _build_lock():
        if (
            not all(p.exists() for p in outputs)
            or min(p.stat().st_mtime for p in outputs) < _newest_source()
        ):
            subprocess.run([node(), "build.mjs"], cwd=PACKAGE, check=True, timeout=600)
    return PACKAGE


SCANNER = ROOT / "js" / "scan"
SCANNER_DIST = SCANNER / "dist"
_SCANNER_SOURCES = ("src", "package.json", "package-lock.json", "build.mjs")


@functools.cache
def scanner_built() -> Path:
    """Build the scanner page's files (js/scan, on js/verify's bundle) unless they are newer
    than every source of both; their directory (the issuer's ``scanner_dir``)."""
    built()
    if not (SCANNER / "node_modules" / "zxing-wasm").exists():
        service_unavailable("js/scan/node_modules is missing: run ./dev test (npm ci)")
    outputs = [SCANNER_DIST / name for name in ("scan.min.js", "cardsvc-verify.min.js")]
    with _build_lock():
        sources = [BUNDLE.stat().st_mtime]
        for name in _SCANNER_SOURCES:
            path = SCANNER / name
            files = path.rglob("*") if path.is_dir() else [path]
            sources.extend(f.stat().st_mtime for f in files if f.is_file())
        if not all(p.exists() for p in outputs) or min(
            p.stat().st_mtime for p in outputs
        ) < max(sources):
            subprocess.run([node(), "build.mjs"], cwd=SCANNER, check=True, timeout=600)
    return SCANNER_DIST


def run_node(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``node args...`` in js/verify, output captured."""
    return subprocess.run(
        [node(), *args], cwd=built(), capture_output=True, text=True, timeout=timeout, check=False
    )


def vectors() -> dict[str, Any]:
    """Every vector file, keyed by its path without ``.json`` (``qr-token/high-s``).

    Not ``sm2/``: the TypeScript verifier has no SM2 (it refuses SM2 keys with a
    DecodeError), so its vector set is the ES256 one (js/verify/test/vectors.ts).
    """
    return {
        str(p.relative_to(VECTORS).with_suffix("")): json.loads(p.read_text())
        for p in sorted(VECTORS.rglob("*.json"))
        if p.relative_to(VECTORS).parts[0] != "sm2"
    }


def scenario() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = json.loads((PACKAGE / "test" / "scenario.json").read_text())[
        "steps"
    ]
    return steps


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def served() -> Iterator[str]:
    """js/verify over HTTP on 127.0.0.1 until the block ends; the page's URL."""
    handler = functools.partial(_QuietHandler, directory=str(built()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/build/test/browser.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def open_page(page: Any, url: str) -> None:
    """Load the test page and wait until the bundle is imported."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)
    assert not errors, errors

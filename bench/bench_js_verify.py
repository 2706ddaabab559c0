"""Figures of js/verify, the TypeScript verifier, in one run: verifies per second in Node
and in Chromium against a raw WebCrypto P-256 verify of the same signed bytes (ratio),
the time to verify and load a bundle with a 1,048,576-entry shard (cardsvc.core beside
it), the shard's inflation by the package's own inflater against DecompressionStream, and
the package's size minified and gzipped. Medians of interleaved repeats.

    .venv/bin/python bench/bench_js_verify.py [--repeats 7] [--seconds 0.5]

Needs node with js/verify/node_modules (./dev test installs them) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import importlib.util
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode
from cardsvc.core.bundle import encode_bundle, verify_bundle
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_encode
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "js" / "verify"
VECTORS = ROOT / "schemas" / "vectors"
SHARD = 1 << 20
CHROMIUM = "/usr/bin/chromium"


def _generator() -> ModuleType:
    """schemas/generate_vectors.py: the vectors' fixed keys and trust list."""
    spec = importlib.util.spec_from_file_location(
        "generate_vectors", ROOT / "schemas/generate_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build() -> None:
    node = shutil.which("node")
    if node is None or not (PACKAGE / "node_modules").exists():
        raise SystemExit("needs node and js/verify/node_modules (run ./dev test once)")
    subprocess.run([node, "build.mjs"], cwd=PACKAGE, check=True)  # noqa: S603


def bench_input(repeats: int, seconds: float) -> tuple[dict[str, Any], str, Any]:
    gen = _generator()
    signer = gen.SIGNERS[KeyPurpose.STATUS_LIST]
    lst = StatusList.new(SHARD, 2)
    rng = random.Random(1)
    for idx in rng.sample(range(SHARD), SHARD // 100):
        lst.set(idx, Status.INVALID)
    uri = f"{gen.STATUS_BASE}/0"
    shard = encode_status_list_jwt(
        lst, sub=uri, iat=gen.NOW - timedelta(minutes=5), exp=gen.NOW + timedelta(hours=1),
        ttl=300, signer=signer,
    )  # fmt: skip
    bundle = encode_bundle(
        issuer=gen.ISSUER, version=1, issued_at=gen.NOW - timedelta(minutes=10),
        expires_at=gen.NOW + timedelta(hours=1), base=None, trust_list=gen.TRUST_LIST_TOKEN,
        status_lists={uri: shard}, signer=signer,
    )  # fmt: skip
    ssc1 = json.loads((VECTORS / "qr-token/transport-valid.json").read_text())
    ssc2 = json.loads((VECTORS / "device-bound/transport-valid.json").read_text())
    message = cose.decode_sign1(b45decode(ssc1["input"][5:]))
    signed = cose.encode_cbor(["Signature1", message.protected_bytes, b"", message.payload])
    ecard = gen.SIGNERS[KeyPurpose.ECARD].verifying_key().jwk()
    data = {
        "root_jwk": ssc1["root_jwk"],
        "trust_list": ssc1["trust_list"],
        "now": ssc1["now"],
        "ssc1": ssc1["input"],
        "ssc2": ssc2["input"],
        "raw": {
            "data": b64url_encode(signed),
            "signature": b64url_encode(message.signature),
            "x": ecard["x"],
            "y": ecard["y"],
        },
        "bundle": bundle,
        "lst": b64url_encode(lst.compressed()),
        "repeats": repeats,
        "seconds": seconds,
    }
    return data, bundle, gen


def python_load_ms(bundle: str, gen: Any, repeats: int) -> float:
    root = VerifyingKey.from_jwk(gen.ROOT.verifying_key().jwk())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        verify_bundle(bundle, root=root, now=gen.NOW, leeway=gen.LEEWAY)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def in_node(path: Path) -> dict[str, float]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(  # noqa: S603
        [node, "build/bench/node.js", str(path)], cwd=PACKAGE, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout)
    return result


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def in_chromium(data: dict[str, Any]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_Quiet, directory=str(PACKAGE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/build/test/browser.html")
            page.wait_for_selector("body[data-ready='1']", state="attached")
            result: dict[str, float] = page.evaluate(
                "(input) => window.cardsvcVerify.bench.runBench(window.cardsvcVerify.api, input)",
                data,
            )
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    build()
    data, bundle, gen = bench_input(args.repeats, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.json"
        path.write_text(json.dumps(data))
        node = in_node(path)
    chromium = in_chromium(data)
    python_ms = python_load_ms(bundle, gen, args.repeats)
    minified = (PACKAGE / "dist" / "cardsvc-verify.min.js").read_bytes()

    print(f"js/verify, medians of {args.repeats} interleaved repeats")
    print(f"{'':38}{'Node':>12}{'Chromium':>12}")
    rows = [
        ("raw WebCrypto P-256 verify /s", "raw_webcrypto_per_s", "{:12.0f}"),
        ("SSC1 verifyQrToken /s", "ssc1_per_s", "{:12.0f}"),
        ("  ratio to raw verify", "ssc1_ratio", "{:12.2f}"),
        ("SSC2 verifyDeviceBound /s (2 sigs)", "ssc2_per_s", "{:12.0f}"),
        ("  ratio to raw verify", "ssc2_ratio", "{:12.2f}"),
        (f"bundle load, {SHARD:,}-entry shard ms", "bundle_load_ms", "{:12.1f}"),
        ("  shard inflate, own inflater ms", "inflate_own_ms", "{:12.1f}"),
        ("  shard inflate, DecompressionStream ms", "inflate_decompressionstream_ms", "{:12.1f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:38}{fmt.format(node[key])}{fmt.format(chromium[key])}")
    print(f"{'bundle load in cardsvc.core (Python) ms':38}{python_ms:12.1f}")
    print(f"bundle: {len(bundle):,} characters; shard entries {int(node['shard_entries']):,}")
    gz = len(gzip.compress(minified, 9))
    print(f"package size: {len(minified):,} bytes minified, {gz:,} bytes gzipped (goal 40,960)")


if __name__ == "__main__":
    main()

"""js/verify (the TypeScript verifier) against cardsvc.core, vector by vector, in Node and
in Chromium: a vector one verifier accepts and the other refuses, or refuses for another
check, fails here. So does any answer of the offline gate's scenario that differs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cardsvc.core import CoreError, OfflineVerifier, Purpose, VerificationError, VerifyingKey
from tests.browser import browser_page
from tests.core.test_schemas import GENERATOR
from tests.js.package import PACKAGE, built, node, open_page, run_node, scenario, served, vectors
from tests.js.package import VECTORS as VECTOR_DIR

VECTORS = vectors()


@pytest.fixture(scope="module")
def python_outcomes() -> dict[str, Any]:
    return {name: GENERATOR.verify_vector(v["kind"], v) for name, v in VECTORS.items()}


@pytest.fixture(scope="module")
def node_run() -> dict[str, Any]:
    done = run_node("build/test/observe.js")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def python_scenario() -> list[dict[str, Any]]:
    """test/scenario.json through cardsvc.core's OfflineVerifier with a state directory."""
    full = VECTORS["bundle/valid-full"]
    root = VerifyingKey.from_jwk(full["root_jwk"])
    clock_now = datetime.fromtimestamp(full["now"], UTC)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as state:

        def gate_at() -> OfflineVerifier:
            return OfflineVerifier(root, state_dir=Path(state), clock=lambda: clock_now)

        gate = gate_at()
        for step in scenario():
            if step["op"] == "reopen":
                gate = gate_at()
                version = gate.bundle.version if gate.bundle else None
                problem = gate.replay_memory_problem is not None
                out.append({"reopened": True, "version": version, "replay_problem": problem})
                continue
            if step["op"] == "damage-replay":
                (Path(state) / "replay-state.json").write_text("{not json")
                out.append({"damaged": True})
                continue
            vector = VECTORS[step["vector"]]
            now = datetime.fromtimestamp(vector["now"] + step["at"], UTC)
            if step["op"] == "update":
                try:
                    out.append({"version": gate.update(vector["input"], now=now).version})
                except CoreError as exc:
                    check = exc.check if isinstance(exc, VerificationError) else None
                    held = gate.bundle.version if gate.bundle else None
                    out.append({"error": type(exc).__name__, "check": check, "held": held})
                continue
            purpose = Purpose[step["purpose"].upper()]
            out.append(gate.verify(vector["input"], purpose=purpose, now=now).to_json())
    return out


def without_detail(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers less ``detail``, words for a person that each verifier may put its way."""
    return [{k: v for k, v in answer.items() if k != "detail"} for answer in answers]


def differences(observed: dict[str, Any], python: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"python": python[name], "js": observed.get(name)}
        for name in python
        if observed.get(name) != python[name]
    }


def test_python_outcomes_are_the_vector_files(python_outcomes: dict[str, Any]) -> None:
    assert {name: v["expected"] for name, v in VECTORS.items()} == python_outcomes


def test_the_node_test_suite_passes() -> None:
    root = built()  # first: on a fresh clone there is no build/ to look in yet
    tests = sorted(str(p.relative_to(root)) for p in (PACKAGE / "build" / "test").glob("*.test.js"))
    assert "build/test/vectors.test.js" in tests
    done = run_node("--test", *tests)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_every_vector_has_python_s_outcome_in_node(
    node_run: dict[str, Any], python_outcomes: dict[str, Any]
) -> None:
    assert set(node_run["vectors"]) == set(VECTORS)
    assert differences(node_run["vectors"], python_outcomes) == {}


def test_the_gate_scenario_answers_as_python_in_node(node_run: dict[str, Any]) -> None:
    python = python_scenario()
    assert len(python) == len(scenario())
    assert without_detail(node_run["scenario"]) == without_detail(python)


@pytest.fixture(scope="module")
def chromium_run() -> Iterator[dict[str, Any]]:
    with served() as url, browser_page(width=800, height=600) as page:
        open_page(page, url)
        outcomes = page.evaluate(
            "async (vectors) => { const { api, runner } = window.cardsvcVerify;"
            " return runner.runAll(api, vectors); }",
            VECTORS,
        )
        answers = page.evaluate(
            "async ([steps, vectors]) => { const { api, scenario } = window.cardsvcVerify;"
            " const store = new api.IndexedDbStore('scenario-' + Date.now());"
            " return scenario.runScenario(api, steps, vectors, store); }",
            [scenario(), VECTORS],
        )
        yield {"vectors": outcomes, "scenario": answers}


@pytest.mark.browser
def test_every_vector_has_python_s_outcome_in_chromium(
    chromium_run: dict[str, Any], python_outcomes: dict[str, Any]
) -> None:
    assert set(chromium_run["vectors"]) == set(VECTORS)
    assert differences(chromium_run["vectors"], python_outcomes) == {}


@pytest.mark.browser
def test_the_gate_scenario_answers_as_python_in_chromium_with_indexeddb(
    chromium_run: dict[str, Any],
) -> None:
    assert without_detail(chromium_run["scenario"]) == without_detail(python_scenario())


def test_npm_pack_makes_a_tarball_that_installs_and_verifies(tmp_path: Path) -> None:
    """What an app developer does: install the tarball, import it, verify a vector."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is installed beside node"
    packed = subprocess.run(  # the build is fresh (built()), so no prepack
        [npm, "pack", "--ignore-scripts", "--json", "--pack-destination", str(tmp_path)],
        cwd=built(), capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    (info,) = json.loads(packed.stdout)
    files = {f["path"] for f in info["files"]}
    assert {"dist/index.js", "dist/node.js", "dist/cardsvc-verify.min.js"} <= files
    assert "dist/types/index.d.ts" in files and not any(f.startswith("src/") for f in files)
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--offline", str(tmp_path / info["filename"])],
        cwd=app, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    vector = VECTORS["qr-token/transport-valid"]
    (app / "vector.json").write_text(json.dumps(vector))
    (app / "check.js").write_text(
        """
import { readFileSync } from "node:fs";
import * as verify from "@cardsvc/verify";
import { FileStore } from "@cardsvc/verify/node";
const v = JSON.parse(readFileSync("vector.json", "utf8"));
const root = await verify.VerifyingKey.fromJwk(v.root_jwk);
const trustList = await verify.TrustList.verify(v.trust_list,
  { root, now: v.now, leeway: v.leeway });
const token = await verify.verifyQrToken(v.input, {
  trustList, now: v.now, leeway: v.leeway, purpose: verify.Purpose.TRANSPORT });
console.log(JSON.stringify({
  result: verify.qrTokenToJson(token, "https://issuer.test/v1/status-lists"),
  version: verify.VERSION, vectors: verify.VECTOR_SET, store: typeof FileStore }));
"""
    )
    done = run_node_in(app, "check.js")
    out = json.loads(done)
    assert out["result"] == vector["expected"]["result"]
    package = json.loads((PACKAGE / "package.json").read_text())
    assert out["version"] == package["version"] == info["version"]
    assert out["vectors"] == package["cardsvc"]["vectorSet"] == vector_set_digest()
    assert out["store"] == "function"


def run_node_in(directory: Path, script: str) -> str:
    done = subprocess.run(
        [node(), script], cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def vector_set_digest() -> dict[str, Any]:
    """As js/verify/test/vectors.ts: sha256 over ``path NUL content NUL``, sorted paths,
    without ``sm2/`` (a suite the TypeScript verifier does not implement)."""
    digest = hashlib.sha256()
    files = sorted(
        str(p.relative_to(VECTOR_DIR))
        for p in VECTOR_DIR.rglob("*.json")
        if p.relative_to(VECTOR_DIR).parts[0] != "sm2"
    )
    for name in files:
        digest.update(name.encode() + b"\0" + (VECTOR_DIR / name).read_bytes() + b"\0")
    return {"files": len(files), "sha256": digest.hexdigest()}


def readme_example() -> str:
    """The ten-line example of js/verify/README.md, as written."""
    text = (PACKAGE / "README.md").read_text()
    example = text.split("## Ten lines", 1)[1].split("```js\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 10
    return example


def test_the_readme_example_runs_from_the_installed_tarball(tmp_path: Path) -> None:
    """The example with its free names bound: a transport code at a gate, then again."""
    npm = shutil.which("npm")
    assert npm is not None
    packed = subprocess.run(
        [npm, "pack", "--ignore-scripts", "--json", "--pack-destination", str(tmp_path)],
        cwd=built(), capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    tarball = tmp_path / json.loads(packed.stdout)[0]["filename"]
    (tmp_path / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--offline", str(tarball)],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    bundle = VECTORS["bundle/valid-full"]
    code = VECTORS["device-bound/transport-valid"]
    lines = readme_example().splitlines()
    imports = [line for line in lines if line.startswith("import ")]
    body = [line for line in lines if not line.startswith("import ")]
    prelude = f"""
import {{ MemoryStore }} from "@cardsvc/verify";
Date.now = () => {code["now"]} * 1000;  // the vectors' time
const ROOT_JWK = {json.dumps(bundle["root_jwk"])};
const BUNDLE_URL = "data:text/plain," + {json.dumps(bundle["input"])};
const store = new MemoryStore();
const openTheGate = (claims) => console.log(JSON.stringify(["open", Object.fromEntries(claims)]));
const show = (outcome, reason) => console.log(JSON.stringify([outcome, reason]));
"""
    again = "const verdict2 = await gate.verify(scannedText, { purpose: Purpose.TRANSPORT });\n"
    again += "show(verdict2.outcome, verdict2.reason);\n"
    source = "\n".join(imports) + prelude + f"const scannedText = {json.dumps(code['input'])};\n"
    (tmp_path / "example.js").write_text(source + "\n".join(body) + "\n" + again)
    out = [json.loads(line) for line in run_node_in(tmp_path, "example.js").splitlines()]
    assert out == [
        ["open", {"4": 1, "5": "2030-06-30"}],
        ["invalid", "replayed"],
    ]

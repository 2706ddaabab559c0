/**
 * Prints, as JSON, every vector's observed outcome in Node and the answers of
 * test/scenario.json with a file store in a fresh directory: what tests/js/test_verify.py
 * compares with cardsvc.core's own answers and with Chromium's.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runAll } from "./runner.js";
import { runScenario, type Step } from "./scenario.js";
import { PACKAGE_DIR, loadVectors } from "./vectors.js";

const api = (await import(new URL("../../dist/index.js", import.meta.url).href)) as typeof import("../src/index.js");
const { FileStore } = (await import(new URL("../../dist/node.js", import.meta.url).href)) as typeof import("../src/node.js");
const vectors = loadVectors();
const steps = (JSON.parse(readFileSync(join(PACKAGE_DIR, "test", "scenario.json"), "utf8")) as { steps: Step[] }).steps;
const dir = mkdtempSync(join(tmpdir(), "cardsvc-verify-"));
try {
  const scenario = await runScenario(api, steps, vectors, new FileStore(dir));
  process.stdout.write(`${JSON.stringify({ vectors: await runAll(api, vectors), scenario })}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

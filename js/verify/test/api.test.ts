/** The stateful parts around the vectors: trust anchor rollback, the file store. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { loadVectors } from "./vectors.js";

const api = (await import(new URL("../../dist/index.js", import.meta.url).href)) as typeof import("../src/index.js");
const { FileStore } = (await import(new URL("../../dist/node.js", import.meta.url).href)) as typeof import("../src/node.js");
const vectors = loadVectors();
const valid = vectors["trust-list/valid"]!;
const root = await api.VerifyingKey.fromJwk(valid.root_jwk);
const at = { now: valid.now, leeway: valid.leeway };

test("a trust anchor accepts a list once and refuses an older sequence", async () => {
  const anchor = new api.TrustAnchor(root);
  const list = await anchor.accept(valid.input, at);
  assert.equal(anchor.acceptedSequence, list.sequence);
  assert.equal((await anchor.accept(valid.input, at)).sequence, list.sequence);
  const newer = new api.TrustAnchor(root, { acceptedSequence: list.sequence + 1 });
  await assert.rejects(newer.accept(valid.input, at), (e: unknown) => e instanceof api.VerificationError && e.check === "rollback");
  assert.equal(newer.current, null);
});

test("a trust anchor refuses a list not signed by the pinned root", async () => {
  const wrong = vectors["trust-list/wrong-root"]!;
  await assert.rejects(new api.TrustAnchor(root).accept(wrong.input, at), (e: unknown) => e instanceof api.VerificationError && e.check === "key-unknown");
});

test("the file store keeps the Python verifier's state format", async () => {
  const dir = mkdtempSync(join(tmpdir(), "cardsvc-verify-"));
  try {
    const full = vectors["bundle/valid-full"]!;
    const gate = await api.OfflineVerifier.open(root, { store: new FileStore(dir), clock: () => full.now });
    await gate.update(full.input, { now: full.now });
    const code = vectors["device-bound/transport-valid"]!;
    assert.equal((await gate.verify(code.input, { purpose: api.Purpose.TRANSPORT, now: code.now })).outcome, "valid");
    const state = JSON.parse(readFileSync(join(dir, "bundle-state.json"), "utf8")) as { format: number; chain: unknown[] };
    assert.equal(state.format, 1);
    assert.equal(state.chain.length, 1);
    const replay = JSON.parse(readFileSync(join(dir, "replay-state.json"), "utf8")) as { seen: [string, number][] };
    assert.equal(replay.seen.length, 1);
    assert.equal(replay.seen[0]![0].length, 32); // e-card, slot, counter: 16 bytes in hex
    const again = await api.OfflineVerifier.open(root, { store: new FileStore(dir), clock: () => full.now });
    assert.equal(again.bundle?.version, 1);
    assert.equal((await again.verify(code.input, { purpose: api.Purpose.TRANSPORT, now: code.now + 1 })).reason, "replayed");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

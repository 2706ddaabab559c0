/**
 * Every decoder under fast-check: random bytes and strings give a value or a typed
 * CoreError, never another exception and never a hang (bounded runs, a time limit per
 * property). Inputs over the documented limits are refused before any expensive work.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CborMap, type CborValue, encodeCbor } from "../src/cbor.js";
import { credentialFromClaims } from "../src/credential.js";
import { b64urlEncode } from "../src/bytes.js";
import { CoreError as SourceCoreError } from "../src/errors.js";
import { qrTokenFromClaims } from "../src/qrtoken.js";
import { loadVectors } from "./vectors.js";

const api = (await import(new URL("../../dist/index.js", import.meta.url).href)) as typeof import("../src/index.js");
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 2000);
const vectors = loadVectors();
const full = vectors["bundle/valid-full"]!;
const root = await api.VerifyingKey.fromJwk(full.root_jwk);
const trustList = await api.TrustList.verify(full.trust_list, { root, now: full.now, leeway: 30 });
const opts = { trustList, now: full.now, leeway: 30 };

/**
 * Run `f`; pass if it returns or throws a CoreError (of the bundle, or of the compiled
 * sources for the internal claims parsers).
 */
async function typed(f: () => unknown): Promise<void> {
  try {
    await f();
  } catch (e) {
    if (!(e instanceof api.CoreError || e instanceof SourceCoreError)) throw new Error(`not a CoreError: ${String(e)}`, { cause: e });
  }
}

function property<T>(arb: fc.Arbitrary<T>, f: (v: T) => unknown, runs = RUNS): Promise<void> {
  return fc.assert(fc.asyncProperty(arb, async (v) => typed(() => f(v))), { numRuns: runs });
}

const bytes = fc.uint8Array({ maxLength: 600 });
const text = fc.string({ maxLength: 400, unit: "binary" });
const b45text = fc.stringMatching(/^[0-9A-Z $%*+\-./:]{0,300}$/);
const b64 = (arb: fc.Arbitrary<Uint8Array>): fc.Arbitrary<string> => arb.map(b64urlEncode);

// CBOR values of every kind the profile admits, for the claims parsers.
const { value: cborValue } = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.integer({ min: -70000, max: 2 ** 40 }),
    fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8, -65537),
    fc.string({ maxLength: 20 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.array(fc.tuple(fc.oneof(fc.integer({ min: -65537, max: 8 }), fc.string({ maxLength: 3 })), tie("value")), { maxLength: 6 })
      .map((entries) => new CborMap(dedupe(entries))),
  ),
}));
function dedupe(entries: Array<[number | string, CborValue]>): Array<readonly [CborValue, CborValue]> {
  const seen = new Set<string>();
  return entries.filter(([k]) => !seen.has(`${typeof k}${k}`) && seen.add(`${typeof k}${k}`));
}
/** Maps shaped like CWT claims: the right keys, random values. */
const claimsLike = fc
  .record({ 1: cborValue, 4: cborValue, 6: cborValue, 7: cborValue, ssc: fc.record({ 1: cborValue, 2: cborValue, 3: cborValue, 4: cborValue }) })
  .map((r) => new CborMap([[1, r[1]], [4, r[4]], [6, r[6]], [7, r[7]], [-65537, new CborMap([[1, r.ssc[1]], [2, r.ssc[2]], [3, r.ssc[3]], [4, r.ssc[4]]])]]));

test("base45: any string", { timeout: 60_000 }, () => property(fc.oneof(text, b45text), (t) => api.b45decode(t)));

test("CBOR: any bytes, and encodings of random values", { timeout: 60_000 }, async () => {
  await property(bytes, (b) => api.decodeCbor(b, "fuzz"));
  await property(cborValue, (v) => api.decodeCbor(encodeCbor(v), "fuzz"));
});

test("COSE_Sign1: any bytes, and arrays of random values", { timeout: 60_000 }, async () => {
  await property(bytes, (b) => api.decodeSign1(b));
  await property(fc.array(cborValue, { minLength: 4, maxLength: 4 }), (parts) => api.decodeSign1(encodeCbor(parts)));
});

test("CWT claims and compact credential claims: random maps", { timeout: 60_000 }, async () => {
  await property(fc.oneof(cborValue, claimsLike), (c) => qrTokenFromClaims(c));
  await property(cborValue, (c) => credentialFromClaims(c, "cn-ssc"));
});

test("SSC1 and SSC2 texts: random payloads behind the prefixes", { timeout: 120_000 }, async () => {
  const qr = fc.oneof(text, b45text.map((t) => `SSC1:${t}`), bytes.map((b) => `SSC1:${api.b45encode(b)}`));
  await property(qr, (t) => api.verifyQrToken(t, opts), 500);
  const dev = fc.oneof(b45text.map((t) => `SSC2:${t}`), bytes.map((b) => `SSC2:${api.b45encode(b)}`));
  await property(dev, (t) => api.verifyDeviceBound(t, opts), 500);
});

const jsonText = fc.json({ depthSize: "small" });
const jws = fc.tuple(fc.oneof(b64(bytes), jsonText.map((j) => b64urlEncode(new TextEncoder().encode(j)))), fc.oneof(b64(bytes), jsonText.map((j) => b64urlEncode(new TextEncoder().encode(j)))), b64(fc.uint8Array({ minLength: 64, maxLength: 64 })))
  .map((parts) => parts.join("."));

test("JWS: strict JSON, trust lists and status list tokens on random compact forms", { timeout: 120_000 }, async () => {
  await property(fc.oneof(text, jsonText), (t) => api.strictJsonObject(t, "fuzz"));
  await property(fc.oneof(text, jws), (t) => api.TrustList.verify(t, { root, now: full.now, leeway: 30 }), 500);
  await property(fc.oneof(text, jws), (t) => api.verifyStatusListToken(t, { ...opts, expectedSub: null }), 500);
});

test("status lists: random zlib input, JSON and CBOR views", { timeout: 120_000 }, async () => {
  await property(fc.tuple(bytes, fc.constantFrom(1, 2, 4, 8, 3)), ([b, bits]) => api.StatusList.fromCompressed(b, bits, { maxEntries: 4096 }));
  // Valid zlib headers in front of random deflate data reach the inflater's inner loops.
  await property(bytes.map((b) => Uint8Array.of(0x78, 0x9c, ...b)), (b) => api.StatusList.fromCompressed(b, 2, { maxEntries: 4096 }));
  await property(fc.oneof(fc.jsonValue(), fc.record({ bits: fc.jsonValue(), lst: fc.oneof(b64(bytes), fc.string()) })), (o) =>
    api.StatusList.fromJsonView(o),
  );
  await property(bytes, (b) => api.StatusList.fromCborView(b));
});

test("status patches: random entries and patch objects", { timeout: 60_000 }, async () => {
  await property(bytes, (b) => api.decodeEntries(b));
  await property(fc.oneof(fc.jsonValue(), fc.record({ entries: fc.oneof(b64(bytes), fc.string()), sha256: fc.oneof(b64(bytes), fc.string()) })), (o) =>
    api.parsePatch(o),
  );
});

test("bundles: random compact forms and claims around the real trust list", { timeout: 120_000 }, async () => {
  const claims = fc
    .record({ iss: fc.jsonValue(), ver: fc.jsonValue(), base: fc.jsonValue(), status_lists: fc.jsonValue(), status_patches: fc.jsonValue() }, { requiredKeys: [] })
    .map((c) => b64urlEncode(new TextEncoder().encode(JSON.stringify({ ...c, trust_list: full.trust_list }))));
  const token = fc.oneof(text, jws, fc.tuple(b64(bytes), claims, b64(bytes)).map((p) => p.join(".")));
  await property(token, (t) => api.verifyBundle(t, { root, now: full.now, leeway: 30 }), 500);
});

test("inputs over the limits are refused before decoding", async () => {
  const big = "A".repeat(4297);
  await assert.rejects(api.verifyQrToken(`SSC1:${big}`, opts), api.InputTooLargeError);
  await assert.rejects(api.verifyDeviceBound(`SSC2:${big}`, opts), api.InputTooLargeError);
  assert.throws(() => api.decodeSign1(new Uint8Array(4097)), api.InputTooLargeError);
  await assert.rejects(api.verifyBundle("x".repeat(1025), { root, now: full.now, leeway: 30, maxSize: 1024 }), api.InputTooLargeError);
  await assert.rejects(api.TrustList.verify("x".repeat(256 * 1024 + 1), { root, now: full.now, leeway: 30 }), api.InputTooLargeError);
  // A zlib bomb: 64 MiB of zeros compress to ~64 KB; inflation stops at the limit.
  const { deflateSync } = await import("node:zlib");
  const bomb = new Uint8Array(deflateSync(new Uint8Array(64 << 20)));
  const started = performance.now();
  assert.throws(() => api.StatusList.fromCompressed(bomb, 2, { maxEntries: 1 << 20 }), api.InputTooLargeError);
  assert.ok(performance.now() - started < 5000);
  assert.throws(() => api.StatusList.fromCompressed(new Uint8Array(300_000), 2, { maxEntries: 1 << 20 }), api.InputTooLargeError);
});

test("the inflater agrees with zlib on valid and damaged streams", async () => {
  const zlib = await import("node:zlib");
  await fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), fc.integer({ min: 0, max: 9 }), (raw, level) => {
      const packed = new Uint8Array(zlib.deflateSync(raw, { level }));
      assert.deepEqual(api.StatusList.fromCompressed(packed, 8, { maxEntries: 1 << 20 }).toBytes(), raw);
      const junk = Uint8Array.of(...packed, 0);
      assert.throws(() => api.StatusList.fromCompressed(junk, 8), api.DecodeError);
      if (packed.length > 6) assert.throws(() => api.StatusList.fromCompressed(packed.subarray(0, -1), 8), api.DecodeError);
    }),
    { numRuns: 300 },
  );
});

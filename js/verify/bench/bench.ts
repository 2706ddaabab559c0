/**
 * Figures of the package, the same code in Node and in Chromium: verifies per second of
 * an SSC1 and an SSC2 token against a raw WebCrypto P-256 verify of the same signed bytes,
 * the time to verify and load a bundle with a 1,048,576-entry shard, and its inflation by
 * this package's inflater against `DecompressionStream`. Medians of interleaved repeats.
 * Imports nothing: the caller passes the package (bench/node.ts, or the test page).
 */
import type * as Api from "../src/index.js";

export interface BenchInput {
  root_jwk: unknown;
  trust_list: string;
  now: number;
  ssc1: string;
  ssc2: string;
  /** The SSC1 token's Sig_structure, signature and signing key (base64url, JWK x/y). */
  raw: { data: string; signature: string; x: string; y: string };
  bundle: string;
  /** The shard's zlib bytes (base64url), for the inflater comparison. */
  lst: string;
  repeats: number;
  seconds: number;
}

function b64(text: string): Uint8Array<ArrayBuffer> {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (text.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Operations per second of `f`, measured for about `seconds`. */
async function opsPerSecond(f: () => Promise<unknown>, seconds: number): Promise<number> {
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    await f();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

async function inflateByStream(data: Uint8Array): Promise<number> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream("deflate"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

export async function runBench(api: typeof Api, input: BenchInput): Promise<Record<string, number>> {
  const root = await api.VerifyingKey.fromJwk(input.root_jwk);
  const trustList = await api.TrustList.verify(input.trust_list, { root, now: input.now, leeway: 30 });
  const opts = { trustList, now: input.now, leeway: 30 };
  const key = await crypto.subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: input.raw.x, y: input.raw.y }, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const data = b64(input.raw.data);
  const signature = b64(input.raw.signature);
  const lst = b64(input.lst);
  if (!(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, data))) throw new Error("raw baseline does not verify");
  await api.verifyQrToken(input.ssc1, opts);
  await api.verifyDeviceBound(input.ssc2, opts);
  const paths: Record<string, () => Promise<unknown>> = {
    raw_webcrypto: () => crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, data),
    ssc1: () => api.verifyQrToken(input.ssc1, opts),
    ssc2: () => api.verifyDeviceBound(input.ssc2, opts),
  };
  const rates: Record<string, number[]> = {};
  for (let r = 0; r < input.repeats; r++) {
    for (const [name, f] of Object.entries(paths)) (rates[name] ??= []).push(await opsPerSecond(f, input.seconds));
  }
  const load: number[] = [];
  const ownInflate: number[] = [];
  const streamInflate: number[] = [];
  let entries = 0;
  for (let r = 0; r < input.repeats; r++) {
    let t = performance.now();
    const bundle = await api.verifyBundle(input.bundle, { root, now: input.now, leeway: 30 });
    load.push(performance.now() - t);
    entries = Math.max(...[...bundle.statusLists.values()].map((s) => s.statusList.size));
    t = performance.now();
    api.StatusList.fromCompressed(lst, 2);
    ownInflate.push(performance.now() - t);
    t = performance.now();
    await inflateByStream(lst);
    streamInflate.push(performance.now() - t);
  }
  const out: Record<string, number> = {};
  for (const [name, values] of Object.entries(rates)) out[`${name}_per_s`] = median(values);
  out["ssc1_ratio"] = out["ssc1_per_s"]! / out["raw_webcrypto_per_s"]!;
  out["ssc2_ratio"] = out["ssc2_per_s"]! / out["raw_webcrypto_per_s"]!;
  out["bundle_load_ms"] = median(load);
  out["shard_entries"] = entries;
  out["inflate_own_ms"] = median(ownInflate);
  out["inflate_decompressionstream_ms"] = median(streamInflate);
  return out;
}

/**
 * Runs one vector of schemas/vectors through the package, as schemas/generate_vectors.py
 * `verify_vector` does through cardsvc.core, and returns the observed outcome in the
 * vector's `expected` format. Takes the package as an argument, so the same runner drives
 * the Node build and the minified bundle in Chromium; imports nothing itself.
 */
import type * as Api from "../src/index.js";

export interface Vector {
  description: string;
  kind: string;
  input: string;
  now: number;
  leeway: number;
  root_jwk: unknown;
  trust_list: string;
  purpose?: string;
  sub?: string;
  previous?: string[];
  expected: Observed;
}

export type Observed = { valid: true; result: unknown } | { valid: false; error: string; check?: string };

/** Where the vectors' issuer publishes status shards (generate_vectors.STATUS_BASE). */
export const STATUS_BASE = "https://issuer.test/v1/status-lists";

/**
 * `reference` is the time the vectors' trust list is accepted at, as generate_vectors'
 * NOW and LEEWAY: those of the `trust-list/valid` vector (the list every vector uses).
 */
export async function runVector(api: typeof Api, vector: Vector, reference: { now: number; leeway: number }): Promise<Observed> {
  const now = vector.now;
  const leeway = vector.leeway;
  const root = await api.VerifyingKey.fromJwk(vector.root_jwk);
  const trustList = await api.TrustList.verify(vector.trust_list, { root, ...reference });
  const purpose = vector.purpose ? api.purposeFromName(vector.purpose) : null;
  const verify = async (): Promise<unknown> => {
    switch (vector.kind) {
      case "trust-list":
        return (await api.TrustList.verify(vector.input, { root, now, leeway })).toClaims();
      case "card-document":
        return api.cardDocumentToClaims(await api.verifyCardDocument(vector.input, { trustList, now, leeway }));
      case "qr-token":
        return api.qrTokenToJson(await api.verifyQrToken(vector.input, { trustList, now, leeway, purpose }), STATUS_BASE);
      case "status-list": {
        const token = await api.verifyStatusListToken(vector.input, { trustList, expectedSub: vector.sub ?? null, now, leeway });
        const lst = token.statusList;
        return { sub: token.sub, bits: lst.bits, size: lst.size, nonzero: Object.fromEntries([7, 1234, 4321].map((i) => [String(i), lst.get(i)])) };
      }
      case "device-bound":
        return await api.deviceBoundToJson(await api.verifyDeviceBound(vector.input, { trustList, now, leeway, purpose }), STATUS_BASE);
      case "bundle": {
        let held: Api.Bundle | null = null;
        for (const token of vector.previous ?? []) held = await api.verifyBundle(token, { root, now, leeway, previous: held });
        return api.bundleToJson(await api.verifyBundle(vector.input, { root, now, leeway, previous: held }));
      }
      default:
        throw new Error(`unknown vector kind ${vector.kind}`);
    }
  };
  try {
    return { valid: true, result: await verify() };
  } catch (e) {
    if (e instanceof api.VerificationError) return { valid: false, error: e.name, check: e.check };
    if (e instanceof api.CoreError) return { valid: false, error: e.name };
    throw e;
  }
}

/** Deep equality of JSON-like values, object key order ignored. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => sameJson(x, bb[i]));
  }
  const ka = Object.keys(a as object).sort();
  const kb = Object.keys(b as object).sort();
  return sameJson(ka, kb) && ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Every vector's observed outcome, keyed `kind-dir/name`. */
export async function runAll(api: typeof Api, vectors: Record<string, Vector>): Promise<Record<string, Observed>> {
  const out: Record<string, Observed> = {};
  const reference = referenceTime(vectors);
  for (const [name, vector] of Object.entries(vectors)) out[name] = await runVector(api, vector, reference);
  return out;
}

/** The time the trust list of the vectors is accepted at (see {@link runVector}). */
export function referenceTime(vectors: Record<string, Vector>): { now: number; leeway: number } {
  const valid = vectors["trust-list/valid"];
  if (valid === undefined) throw new Error("no trust-list/valid vector");
  return { now: valid.now, leeway: valid.leeway };
}

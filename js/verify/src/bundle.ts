/**
 * The verifier bundle (`verifier-bundle+jwt`): one signed file with the trust list and the
 * status list shards, full or a delta (with entry patches), as cardsvc.core.bundle.
 */
import { isAscii } from "./bytes.js";
import { DecodeError, InputTooLargeError, StatusPatchError, VerificationError, shown } from "./errors.js";
import { checkTimes, verifyJws } from "./jws.js";
import { isJsonInt, isJsonObject, type JsonObject, JsonFloat, strictJsonObject } from "./json.js";
import { KeyPurpose, type VerifyingKey } from "./keys.js";
import { MAX_ENTRIES, MAX_JWT_SIZE, type StatusListToken, verifyStatusListToken } from "./statuslist.js";
import { type Run, applyPatch, listDigestText, parsePatch } from "./statuspatch.js";
import { TrustList } from "./trustlist.js";

export const BUNDLE_TYP = "verifier-bundle+jwt";
/** Default upper bound on a bundle, in characters, checked before anything is decoded. */
export const MAX_BUNDLE_SIZE = 256 * 1024 * 1024;
const FORMAT = "verifier bundle";

/** A verified bundle; after a delta, the previous bundle with the delta applied. */
export interface Bundle {
  issuer: string;
  version: number;
  issuedAt: number;
  expiresAt: number;
  /** The version the verified token was a delta from (`null`: a full bundle). */
  base: number | null;
  trustList: TrustList;
  /** Shard URI to its verified Status List Token. */
  statusLists: ReadonlyMap<string, StatusListToken>;
  /** URIs rebuilt by this bundle's entry patches. */
  patched: ReadonlySet<string>;
  /** URIs the verified token carried whole. */
  sent: ReadonlySet<string>;
}

/** A summary of what was verified (the `expected.result` of bundle vectors). */
export async function bundleToJson(bundle: Bundle): Promise<Record<string, unknown>> {
  const lists: Record<string, unknown> = {};
  for (const uri of [...bundle.statusLists.keys()].sort()) {
    const token = bundle.statusLists.get(uri)!;
    lists[uri] = { bits: token.statusList.bits, size: token.statusList.size, exp: token.exp, sha256: await listDigestText(token.statusList) };
  }
  return {
    iss: bundle.issuer,
    ver: bundle.version,
    iat: bundle.issuedAt,
    exp: bundle.expiresAt,
    base: bundle.base,
    trust_list_seq: bundle.trustList.sequence,
    patched: [...bundle.patched].sort(),
    status_lists: lists,
  };
}

function unverifiedClaims(token: unknown, maxSize: number): JsonObject {
  if (typeof token !== "string") throw new DecodeError(FORMAT, "bundle must be text");
  if (token.length > maxSize) throw new InputTooLargeError(FORMAT, token.length, maxSize);
  const parts = token.split(".");
  if (parts.length !== 3 || !isAscii(token)) throw new DecodeError(FORMAT, "not a compact JWS (three base64url parts)");
  return strictJsonObject(lenientB64urlDecode(parts[1]!), FORMAT);
}

/**
 * Python's `b64url_decode` (the unverified first read of a bundle): no padding, and
 * characters outside the alphabet are dropped; the signature check later reads the
 * payload canonically.
 */
function lenientB64urlDecode(text: string): Uint8Array {
  if (text.includes("=")) throw new DecodeError("bundle payload", "not unpadded base64url text");
  const kept = text.replace(/-/g, "+").replace(/_/g, "/").replace(/[^A-Za-z0-9+/]/g, "");
  if (kept.length % 4 === 1) throw new DecodeError("bundle payload", "invalid base64url: bad length");
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const out = new Uint8Array(Math.floor((kept.length * 3) / 4));
  let acc = 0;
  let n = 0;
  let o = 0;
  for (let i = 0; i < kept.length; i++) {
    acc = ((acc << 6) | alphabet.indexOf(kept[i]!)) & 0xffffff;
    n += 6;
    if (n >= 8) {
      n -= 8;
      out[o++] = (acc >> n) & 0xff;
    }
  }
  return out.subarray(0, o);
}

function intClaim(claims: JsonObject, name: string): number {
  const value = claims[name];
  if (!isJsonInt(value) || value < 0) throw new VerificationError("claims", `${name} must be a non-negative integer`);
  return Number(value);
}

function seconds(v: unknown): number {
  return Math.trunc(v instanceof JsonFloat ? v.value : Number(v));
}

export interface BundleOptions {
  root: VerifyingKey;
  now: number;
  leeway: number;
  previous?: Bundle | null;
  maxSize?: number;
  maxStatusListSize?: number;
  maxEntries?: number;
}

/**
 * Verify a bundle against the pinned `root` key; return it (merged, for a delta). Checks,
 * in order: size and shape, the trust list against `root`, the bundle signature by a
 * `status-list` key of that trust list, the claims and times, `bundle-issuer`,
 * `bundle-rollback` against `previous`, every status list token, `bundle-base` and the
 * entry patches (`patch-base`, `patch-index`, `patch-status`, `patch-digest`).
 */
export async function verifyBundle(token: unknown, opts: BundleOptions): Promise<Bundle> {
  const { root, now, leeway } = opts;
  const previous = opts.previous ?? null;
  const maxSize = opts.maxSize ?? MAX_BUNDLE_SIZE;
  const unverified = unverifiedClaims(token, maxSize);
  const trustListJws = unverified["trust_list"];
  if (typeof trustListJws !== "string") throw new VerificationError("claims", "trust_list must be a compact JWS string");
  const trustList = await TrustList.verify(trustListJws, { root, now, leeway });
  const verified = await verifyJws(token, {
    typ: BUNDLE_TYP,
    maxSize,
    keyFor: (header) => {
      const kid = header["kid"];
      if (typeof kid !== "string") throw new VerificationError("key-unknown", "bundle header has no kid");
      return trustList.find(kid, KeyPurpose.STATUS_LIST, now).key;
    },
  });
  const claims = verified.claims;
  if (claims["trust_list"] !== trustListJws) throw new VerificationError("claims", "trust_list changed between parses");
  const issuer = claims["iss"];
  if (typeof issuer !== "string" || !issuer) throw new VerificationError("claims", "iss must be a non-empty string");
  const version = intClaim(claims, "ver");
  let base: number | null = null;
  if (claims["base"] !== undefined && claims["base"] !== null) {
    base = intClaim(claims, "base");
    if (base >= version) throw new VerificationError("claims", `base ${base} is not below version ${version}`);
  }
  const shards = claims["status_lists"];
  if (!isJsonObject(shards) || !Object.entries(shards).every(([uri, jws]) => uri && typeof jws === "string")) {
    throw new VerificationError("claims", "status_lists must map shard URIs to JWS strings");
  }
  const patches = "status_patches" in claims ? claims["status_patches"] : {};
  if (!isJsonObject(patches) || !Object.keys(patches).every((uri) => uri)) {
    throw new VerificationError("claims", "status_patches must map shard URIs to patches");
  }
  if (Object.keys(patches).length && base === null) throw new VerificationError("claims", "a full bundle cannot carry status_patches");
  if (Object.keys(patches).some((uri) => uri in shards)) {
    throw new VerificationError("claims", "a shard is both in status_lists and status_patches");
  }
  const parsed = new Map<string, { runs: Run[]; digest: Uint8Array }>();
  for (const [uri, patch] of Object.entries(patches)) parsed.set(uri, parsePatch(patch));
  checkTimes(claims, now, leeway);
  const issuedAt = seconds(claims["iat"]);
  const expiresAt = seconds(claims["exp"]);
  if (trustList.issuer !== issuer) {
    throw new VerificationError("bundle-issuer", `trust list issuer ${shown(trustList.issuer)} is not ${shown(issuer)}`);
  }
  if (previous !== null) checkNotRolledBack(previous, issuer, version, issuedAt, trustList);

  const fresh = new Map<string, StatusListToken>();
  for (const [uri, jws] of Object.entries(shards)) {
    fresh.set(
      uri,
      await verifyStatusListToken(jws, {
        trustList,
        expectedSub: uri,
        now,
        leeway,
        maxSize: opts.maxStatusListSize ?? MAX_JWT_SIZE,
        maxEntries: opts.maxEntries ?? MAX_ENTRIES,
      }),
    );
  }
  let statusLists: Map<string, StatusListToken>;
  if (base === null) statusLists = fresh;
  else {
    if (previous === null || previous.version !== base) {
      const have = previous === null ? "no bundle" : `version ${previous.version}`;
      throw new VerificationError("bundle-base", `delta from version ${base} cannot apply to ${have}; fetch a full bundle`);
    }
    statusLists = new Map([...previous.statusLists, ...fresh]);
    const kid = verified.header["kid"];
    for (const [uri, { runs, digest }] of parsed) {
      const held = previous.statusLists.get(uri);
      if (held === undefined) {
        throw new StatusPatchError("patch-base", `the held bundle (version ${previous.version}) has no such shard; fetch a full bundle`, { uri });
      }
      statusLists.set(uri, {
        sub: uri,
        iat: issuedAt,
        exp: expiresAt,
        ttl: held.ttl,
        statusList: await applyPatch(held.statusList, runs, digest, uri),
        kid: typeof kid === "string" ? kid : null,
      });
    }
  }
  return {
    issuer,
    version,
    issuedAt,
    expiresAt,
    base,
    trustList,
    statusLists,
    patched: new Set(parsed.keys()),
    sent: new Set(Object.keys(shards)),
  };
}

function iso(t: number): string {
  return new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function checkNotRolledBack(previous: Bundle, issuer: string, version: number, issuedAt: number, trustList: TrustList): void {
  if (issuer !== previous.issuer) throw new VerificationError("bundle-issuer", `issuer ${shown(issuer)} is not ${shown(previous.issuer)}`);
  if (version < previous.version) throw new VerificationError("bundle-rollback", `version ${version} is older than the held ${previous.version}`);
  if (version === previous.version && issuedAt !== previous.issuedAt) {
    throw new VerificationError("bundle-rollback", `version ${version} reused with another iat`);
  }
  if (issuedAt < previous.issuedAt) throw new VerificationError("bundle-rollback", `signed time ${iso(issuedAt)} is before the held one`);
  if (trustList.sequence < previous.trustList.sequence) {
    throw new VerificationError(
      "bundle-rollback",
      `trust list sequence ${trustList.sequence} is older than the held ${previous.trustList.sequence}`,
    );
  }
}

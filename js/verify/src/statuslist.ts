/**
 * IETF Token Status List: the list (entries of 1, 2, 4 or 8 bits, LSB first) and its JWT
 * (`statuslist+jwt`), as cardsvc.core.statuslist. Every parser bounds its input before
 * expanding it: inflation stops past the limit implied by `maxEntries`.
 */
import { canonicalB64urlDecode } from "./bytes.js";
import { CborMap, decodeCbor } from "./cbor.js";
import { DecodeError, InputTooLargeError, StatusListError, VerificationError, shown } from "./errors.js";
import { InflateError, InflateLimitError, inflateZlib } from "./inflate.js";
import { checkTimes, verifyJws } from "./jws.js";
import { isJsonInt, isJsonObject, type JsonObject } from "./json.js";
import { KeyPurpose, type VerifyingKey } from "./keys.js";
import type { TrustList } from "./trustlist.js";

/** Default upper bound on the entries of a decoded list (2**24: 4 MiB at 2 bits). */
export const MAX_ENTRIES = 1 << 24;
/** Default upper bound on a Status List Token, in characters, checked before decoding. */
export const MAX_JWT_SIZE = 4 * 1024 * 1024;
export const STATUS_LIST_TYP = "statuslist+jwt";
const FORMAT = "status-list";
const BITS = new Set([1, 2, 4, 8]);

/** Status Types registered by the draft. */
export const Status = { VALID: 0, INVALID: 1, SUSPENDED: 2, APPLICATION_SPECIFIC: 3 } as const;

function maxBytes(maxEntries: number, bits: number): number {
  return Math.floor((maxEntries * bits) / 8);
}
function maxCompressed(max: number): number {
  return max + (max >> 10) + 64;
}

function checkBits(bits: unknown): number {
  if (!isJsonInt(bits)) throw new DecodeError(FORMAT, "bits must be an integer");
  if (typeof bits !== "number" || !BITS.has(bits)) throw new DecodeError(FORMAT, `bits must be 1, 2, 4 or 8, not ${shown(bits)}`);
  return bits;
}

/** A Token Status List held uncompressed. */
export class StatusList {
  private readonly shift: number;
  private readonly perByteMask: number;
  private readonly mask: number;

  /** Takes ownership of `buf`. Prefer {@link fromCompressed} and the other builders. */
  constructor(
    private readonly buf: Uint8Array,
    readonly bits: number,
    readonly size: number,
    readonly aggregationUri: string | null = null,
  ) {
    if (!BITS.has(bits)) throw new StatusListError(`bits must be 1, 2, 4 or 8, not ${shown(bits)}`);
    if (!(size >= 0 && size <= Math.floor((buf.length * 8) / bits) && size > Math.floor(((buf.length - 1) * 8) / bits))) {
      if (!(buf.length === 0 && size === 0)) throw new StatusListError(`${size} entries of ${bits} bits do not fill ${buf.length} bytes`);
    }
    const log2 = Math.log2(bits);
    this.shift = 3 - log2;
    this.perByteMask = (8 >> log2) - 1;
    this.mask = (1 << bits) - 1;
  }

  /** Inflate a zlib (RFC 1950) list; {@link InputTooLargeError} past `maxEntries`. */
  static fromCompressed(lst: Uint8Array, bits: number, opts: { maxEntries?: number; aggregationUri?: string | null } = {}): StatusList {
    checkBits(bits);
    const limit = maxBytes(opts.maxEntries ?? MAX_ENTRIES, bits);
    if (!(lst instanceof Uint8Array)) throw new DecodeError(FORMAT, "lst must be bytes");
    if (lst.length > maxCompressed(limit)) throw new InputTooLargeError(FORMAT, lst.length, maxCompressed(limit));
    let raw: Uint8Array;
    try {
      raw = inflateZlib(lst, limit);
    } catch (e) {
      if (e instanceof InflateLimitError) throw new InputTooLargeError(FORMAT, e.size, limit);
      if (e instanceof InflateError) throw new DecodeError(FORMAT, `lst is not a valid zlib stream: ${e.message}`);
      throw e;
    }
    return new StatusList(raw.slice(), bits, Math.floor((raw.length * 8) / bits), opts.aggregationUri ?? null);
  }

  /** Parse the JSON form `{"bits": n, "lst": "<base64url>"}` (already parsed). */
  static fromJsonView(obj: unknown, opts: { maxEntries?: number } = {}): StatusList {
    const maxEntries = opts.maxEntries ?? MAX_ENTRIES;
    if (!isJsonObject(obj)) throw new DecodeError(FORMAT, "status list must be a JSON object");
    for (const name of ["bits", "lst"]) if (!(name in obj)) throw new DecodeError(FORMAT, `missing member ${JSON.stringify(name)}`);
    const bits = checkBits(obj["bits"]);
    const lst = obj["lst"];
    if (typeof lst !== "string") throw new DecodeError(FORMAT, "lst must be a string");
    const textLimit = Math.floor((maxCompressed(maxBytes(maxEntries, bits)) * 4 + 2) / 3);
    if (lst.length > textLimit) throw new InputTooLargeError(FORMAT, lst.length, textLimit);
    const compressed = canonicalB64urlDecode(lst, FORMAT, "lst");
    return StatusList.fromCompressed(compressed, bits, { maxEntries, aggregationUri: aggregationUri(obj) });
  }

  /** Parse the CBOR form, a map `{"bits": uint, "lst": bstr}` (deterministic CBOR here). */
  static fromCborView(data: Uint8Array, opts: { maxEntries?: number } = {}): StatusList {
    const maxEntries = opts.maxEntries ?? MAX_ENTRIES;
    if (!(data instanceof Uint8Array)) throw new DecodeError(FORMAT, "expected CBOR bytes");
    const limit = maxCompressed(maxBytes(maxEntries, 8)) + 256;
    if (data.length > limit) throw new InputTooLargeError(FORMAT, data.length, limit);
    const obj = decodeCbor(data, "status list");
    if (!(obj instanceof CborMap)) throw new DecodeError(FORMAT, "status list must be a CBOR map");
    for (const name of ["bits", "lst"]) if (!obj.has(name)) throw new DecodeError(FORMAT, `missing key ${JSON.stringify(name)}`);
    const bits = checkBits(obj.get("bits"));
    const lst = obj.get("lst");
    if (!(lst instanceof Uint8Array)) throw new DecodeError(FORMAT, "lst must be a byte string");
    let uri: string | null = null;
    if (obj.has("aggregation_uri")) {
      const u = obj.get("aggregation_uri");
      if (typeof u !== "string" || !u) throw new DecodeError(FORMAT, "aggregation_uri must be a non-empty string");
      uri = u;
    }
    return StatusList.fromCompressed(lst, bits, { maxEntries, aggregationUri: uri });
  }

  get length(): number {
    return this.size;
  }

  /** The status of entry `index`; {@link StatusListError} out of range. */
  get(index: number): number {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new StatusListError(`index ${shown(index)} is out of range for a status list of ${this.size} entries`);
    }
    return (this.buf[index >> this.shift]! >> ((index & this.perByteMask) * this.bits)) & this.mask;
  }

  /** A copy with runs of entries set (used by entry patches; the list itself never changes). */
  withRuns(runs: ReadonlyArray<{ start: number; count: number; status: number }>): StatusList {
    const buf = this.buf.slice();
    const { shift, perByteMask, bits, mask } = this;
    for (const run of runs) {
      for (let i = run.start; i < run.start + run.count; i++) {
        const s = (i & perByteMask) * bits;
        const p = i >> shift;
        buf[p] = (buf[p]! & ~(mask << s)) | (run.status << s);
      }
    }
    return new StatusList(buf, bits, this.size, this.aggregationUri);
  }

  /** A copy of the uncompressed byte array. */
  toBytes(): Uint8Array {
    return this.buf.slice();
  }

  /** The uncompressed bytes, not copied (read only). */
  view(): Uint8Array {
    return this.buf;
  }
}

function aggregationUri(obj: JsonObject): string | null {
  if (!("aggregation_uri" in obj)) return null;
  const uri = obj["aggregation_uri"];
  if (typeof uri !== "string" || !uri) throw new DecodeError(FORMAT, "aggregation_uri must be a non-empty string");
  return uri;
}

/** The verified content of a Status List Token (times in epoch seconds). */
export interface StatusListToken {
  sub: string;
  iat: number;
  exp: number;
  ttl: number | null;
  statusList: StatusList;
  kid: string | null;
}

export interface StatusListOptions {
  expectedSub: string | null;
  now: number;
  leeway: number;
  maxSize?: number;
  maxEntries?: number;
}

async function verifyToken(token: unknown, keyFor: (h: JsonObject) => VerifyingKey, opts: StatusListOptions): Promise<StatusListToken> {
  if (!(opts.leeway >= 0)) throw new RangeError("leeway must be a non-negative number of seconds");
  const verified = await verifyJws(token, { typ: STATUS_LIST_TYP, keyFor, maxSize: opts.maxSize ?? MAX_JWT_SIZE });
  const claims = verified.claims;
  for (const name of ["sub", "iat", "exp", "status_list"]) {
    if (!(name in claims)) throw new VerificationError("claims", `missing required claim ${JSON.stringify(name)}`);
  }
  const sub = claims["sub"];
  if (typeof sub !== "string" || !sub) throw new VerificationError("claims", "sub must be a non-empty string");
  const ttl = "ttl" in claims ? claims["ttl"] : null;
  if (ttl !== null && !(isJsonInt(ttl) && ttl > 0)) throw new VerificationError("claims", `ttl must be a positive integer, not ${shown(ttl)}`);
  const view = claims["status_list"];
  if (!isJsonObject(view)) throw new VerificationError("claims", "status_list must be a JSON object");
  checkTimes(claims, opts.now, opts.leeway);
  if (opts.expectedSub !== null && sub !== opts.expectedSub) {
    throw new VerificationError("sub", `sub ${shown(sub)} is not the expected ${shown(opts.expectedSub)}`);
  }
  const kid = verified.header["kid"];
  const time = (v: unknown): number => Math.trunc(typeof v === "object" && v !== null ? (v as { value: number }).value : Number(v));
  return {
    sub,
    iat: time(claims["iat"]),
    exp: time(claims["exp"]),
    ttl: ttl === null ? null : Number(ttl),
    statusList: StatusList.fromJsonView(view, { maxEntries: opts.maxEntries ?? MAX_ENTRIES }),
    kid: typeof kid === "string" ? kid : null,
  };
}

/**
 * Verify a Status List Token signed by a `status-list` key of `trustList`. Checks: `crit`,
 * `typ`, `key-unknown`/`key-purpose`/`key-window`, `algorithm`, `signature`, `claims`,
 * `expired`, `issued-in-future`, `not-yet-valid`, `sub`; the list is inflated last.
 */
export function verifyStatusListToken(token: unknown, opts: StatusListOptions & { trustList: TrustList }): Promise<StatusListToken> {
  return verifyToken(
    token,
    (header) => {
      const kid = header["kid"];
      if (typeof kid !== "string") throw new VerificationError("key-unknown", "header has no kid");
      return opts.trustList.find(kid, KeyPurpose.STATUS_LIST, opts.now).key;
    },
    opts,
  );
}

/** Verify a Status List Token with one known `key`. */
export function decodeStatusListJwt(token: unknown, opts: StatusListOptions & { key: VerifyingKey }): Promise<StatusListToken> {
  return verifyToken(token, () => opts.key, opts);
}

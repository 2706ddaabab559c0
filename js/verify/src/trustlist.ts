/** The trust list: the root-signed list of issuing keys, each bound to one purpose. */
import { equalBytes, toHex } from "./bytes.js";
import { DecodeError, VerificationError } from "./errors.js";
import { checkTimes, verifyJws } from "./jws.js";
import { isJsonInt, isJsonObject, type JsonObject } from "./json.js";
import { KeyPurpose, VerifyingKey, isKeyPurpose, shortKid } from "./keys.js";

export const TRUST_LIST_TYP = "trustlist+jwt";
/** A trust list lists a few dozen keys; anything this large is not one. */
export const MAX_TRUST_LIST_SIZE = 256 * 1024;
const MIN_TIME = -62135596800; // 0001-01-01T00:00:00Z
const MAX_TIME = 253402300799; // 9999-12-31T23:59:59Z

function seconds(value: unknown, what: string): number {
  if (!isJsonInt(value)) throw new DecodeError("trust list", `${what} must be an integer NumericDate`);
  const n = Number(value);
  if (n < MIN_TIME || n > MAX_TIME) throw new DecodeError("trust list", `${what} is out of range`);
  return n;
}

function iso(t: number): string {
  return new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** An issuing key, the one purpose it signs for and its validity window (epoch seconds). */
export class TrustedKey {
  constructor(
    readonly key: VerifyingKey,
    readonly purpose: KeyPurpose,
    readonly notBefore: number,
    readonly notAfter: number,
  ) {}

  static async fromJson(obj: unknown): Promise<TrustedKey> {
    if (!isJsonObject(obj)) throw new DecodeError("trust list", "each key must be a JSON object");
    const key = await VerifyingKey.fromJwk(obj);
    if (obj["kid"] !== key.kid) throw new DecodeError("trust list", "kid is not the key's thumbprint");
    const purpose = obj["purpose"];
    if (!isKeyPurpose(purpose)) throw new DecodeError("trust list", "unknown key purpose");
    if (purpose === KeyPurpose.ROOT) throw new DecodeError("trust list", "the root key is pinned, never listed");
    const nbf = seconds(obj["nbf"], "nbf");
    const exp = seconds(obj["exp"], "exp");
    if (exp <= nbf) throw new DecodeError("trust list", `key ${key.kid}: exp is not after nbf`);
    return new TrustedKey(key, purpose, nbf, exp);
  }

  toJson(): Record<string, unknown> {
    return { ...this.key.jwk(), purpose: this.purpose, nbf: this.notBefore, exp: this.notAfter };
  }
}

/** A verified trust list. Times are epoch seconds. */
export class TrustList {
  private readonly byKid = new Map<string, TrustedKey>();
  private readonly byShortKid = new Map<string, TrustedKey>();

  constructor(
    readonly issuer: string,
    readonly sequence: number,
    readonly issuedAt: number,
    readonly expiresAt: number,
    readonly keys: readonly TrustedKey[],
  ) {
    for (const k of keys) {
      if (this.byKid.has(k.key.kid)) throw new DecodeError("trust list", "a key is listed twice");
      this.byKid.set(k.key.kid, k);
      const short = toHex(shortKid(k.key.kid));
      if (this.byShortKid.has(short)) throw new DecodeError("trust list", "two keys share a short kid");
      this.byShortKid.set(short, k);
    }
  }

  /** The listed key `kid` if it signs for `purpose` and `now` (seconds) is in its window. */
  find(kid: string, purpose: KeyPurpose, now: number): TrustedKey {
    return TrustList.check(typeof kid === "string" ? this.byKid.get(kid) : undefined, JSON.stringify(kid), purpose, now);
  }

  /** As {@link find}, by the 8-byte short kid that QR tokens carry. */
  findShort(kid8: Uint8Array, purpose: KeyPurpose, now: number): TrustedKey {
    return TrustList.check(this.byShortKid.get(toHex(kid8)), toHex(kid8), purpose, now);
  }

  private static check(trusted: TrustedKey | undefined, name: string, purpose: KeyPurpose, now: number): TrustedKey {
    if (trusted === undefined) throw new VerificationError("key-unknown", `key ${name} is not in the trust list`);
    if (trusted.purpose !== purpose) {
      throw new VerificationError("key-purpose", `key ${name} signs ${trusted.purpose}, not ${purpose}`);
    }
    if (!(trusted.notBefore <= now && now <= trusted.notAfter)) {
      throw new VerificationError(
        "key-window",
        `key ${name} is valid from ${iso(trusted.notBefore)} to ${iso(trusted.notAfter)}`,
      );
    }
    return trusted;
  }

  toClaims(): Record<string, unknown> {
    return {
      iss: this.issuer,
      seq: this.sequence,
      iat: this.issuedAt,
      exp: this.expiresAt,
      keys: this.keys.map((k) => k.toJson()),
    };
  }

  static async fromClaims(claims: JsonObject): Promise<TrustList> {
    const seq = claims["seq"];
    if (!isJsonInt(seq) || seq < 0) throw new DecodeError("trust list", "seq must be a non-negative integer");
    const issuer = claims["iss"];
    if (typeof issuer !== "string" || !issuer) throw new DecodeError("trust list", "iss must be a non-empty string");
    const keys = claims["keys"];
    if (!Array.isArray(keys)) throw new DecodeError("trust list", "keys must be a list");
    const iat = seconds(claims["iat"], "iat");
    const exp = seconds(claims["exp"], "exp");
    const trusted: TrustedKey[] = [];
    for (const k of keys) trusted.push(await TrustedKey.fromJson(k));
    return new TrustList(issuer, Number(seq), iat, exp, trusted);
  }

  /** Verify a trust list JWS against the pinned root key and the clock (seconds). */
  static async verify(token: unknown, opts: { root: VerifyingKey; now: number; leeway: number }): Promise<TrustList> {
    const verified = await verifyJws(token, {
      typ: TRUST_LIST_TYP,
      maxSize: MAX_TRUST_LIST_SIZE,
      keyFor: (header) => {
        if (header["kid"] !== opts.root.kid) throw new VerificationError("key-unknown", "not signed by the pinned root key");
        return opts.root;
      },
    });
    checkTimes(verified.claims, opts.now, opts.leeway);
    return TrustList.fromClaims(verified.claims);
  }

  /** Whether two lists have the same content. */
  sameAs(other: TrustList): boolean {
    const a = new TextEncoder().encode(JSON.stringify(this.toClaims()));
    const b = new TextEncoder().encode(JSON.stringify(other.toClaims()));
    return equalBytes(a, b);
  }
}

/**
 * A pinned root key and the newest trust list accepted under it. Refuses rollback: a
 * lower sequence number than one already accepted, or the same with other content.
 */
export class TrustAnchor {
  private acceptedSeq: number;
  private currentList: TrustList | null = null;

  constructor(
    readonly root: VerifyingKey,
    opts: { acceptedSequence?: number } = {},
  ) {
    this.acceptedSeq = opts.acceptedSequence ?? -1;
  }

  get current(): TrustList | null {
    return this.currentList;
  }

  get acceptedSequence(): number {
    return this.acceptedSeq;
  }

  /** Verify `token` and make it current; raises `rollback` for an older or reused sequence. */
  async accept(token: string, opts: { now: number; leeway: number }): Promise<TrustList> {
    const list = await TrustList.verify(token, { root: this.root, ...opts });
    const seq = list.sequence;
    if (seq < this.acceptedSeq) {
      throw new VerificationError("rollback", `sequence ${seq} is older than the accepted ${this.acceptedSeq}`);
    }
    if (seq === this.acceptedSeq && this.currentList !== null && !list.sameAs(this.currentList)) {
      throw new VerificationError("rollback", `sequence ${seq} reused with other content`);
    }
    this.acceptedSeq = seq;
    this.currentList = list;
    return list;
  }
}

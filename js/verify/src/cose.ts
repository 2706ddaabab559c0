/**
 * COSE_Sign1 (RFC 9052) with the ES256-only profile of our QR tokens, as cardsvc.core.cose:
 * alg ES256 in the protected header, which holds alg and at most kid (no crit, no other
 * label); low-S; deterministic CBOR throughout; no tag inside; no label in both buckets;
 * no detached payload.
 */
import { CborMap, type CborValue, cborType, decodeCbor, isCborInt } from "./cbor.js";
import { concat, equalBytes } from "./bytes.js";
import { isHighS, verifyP256 } from "./ecdsa.js";
import { DecodeError, InputTooLargeError, VerificationError, shown } from "./errors.js";

export const ALG_ES256 = -7;
export const HEADER_ALG = 1;
export const HEADER_CRIT = 2;
export const HEADER_CONTENT_TYPE = 3;
export const HEADER_KID = 4;
export const TAG_SIGN1 = 18;
/** Largest encoded COSE_Sign1 accepted (a version 40 QR code holds 2864 bytes). */
export const MAX_SIGN1_SIZE = 4096;

const FORMAT = "cose";
const OTHER_COSE_TAGS: Record<number, string> = {
  16: "COSE_Encrypt0",
  17: "COSE_Mac0",
  61: "CWT",
  96: "COSE_Encrypt",
  97: "COSE_Mac",
  98: "COSE_Sign",
};
const ALG_NAMES: Record<number, string> = {
  [-7]: "ES256",
  [-35]: "ES384",
  [-36]: "ES512",
  [-8]: "EdDSA",
  [-37]: "PS256",
  [-257]: "RS256",
  4: "HMAC 256/64",
  5: "HMAC 256/256",
};

/** Header labels are integers or text; values as decoded. */
export type HeaderMap = Map<number | bigint | string, CborValue>;

/** A parsed, not yet verified, COSE_Sign1 (see {@link decodeSign1}). */
export interface Sign1Message {
  protected: HeaderMap;
  /** The protected header exactly as received: what the signature covers. */
  protectedBytes: Uint8Array;
  unprotected: HeaderMap;
  payload: Uint8Array;
  signature: Uint8Array;
}

/** Key identifier from the protected header, else the unprotected one (unauthenticated). */
export function messageKid(msg: Sign1Message): Uint8Array | null {
  const kid = msg.protected.has(HEADER_KID) ? msg.protected.get(HEADER_KID) : msg.unprotected.get(HEADER_KID);
  return kid instanceof Uint8Array ? kid : null;
}

function normLabel(label: number | bigint | string): number | bigint | string {
  return typeof label === "bigint" && label >= BigInt(Number.MIN_SAFE_INTEGER) && label <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(label)
    : label;
}

function headerMap(header: CborMap, bucket: string): HeaderMap {
  const result: HeaderMap = new Map();
  for (const [label, value] of header.entries) {
    if (!isCborInt(label) && typeof label !== "string") {
      throw new DecodeError(FORMAT, `${bucket} header label ${cborType(label)} is not int/tstr`);
    }
    result.set(normLabel(label), value);
  }
  const alg = result.get(HEADER_ALG);
  if (alg !== undefined && !isCborInt(alg) && typeof alg !== "string") {
    throw new DecodeError(FORMAT, `${bucket} alg must be int or tstr, got ${cborType(alg)}`);
  }
  if (result.has(HEADER_CRIT)) {
    const critical = result.get(HEADER_CRIT);
    if (!Array.isArray(critical) || critical.length === 0 || critical.some((l) => !isCborInt(l) && typeof l !== "string")) {
      throw new DecodeError(FORMAT, `${bucket} crit must be a non-empty array of labels`);
    }
  }
  if (result.has(HEADER_CONTENT_TYPE)) {
    const ct = result.get(HEADER_CONTENT_TYPE);
    if (!(isCborInt(ct) && ct >= 0) && typeof ct !== "string") {
      throw new DecodeError(FORMAT, `${bucket} content type must be uint or tstr`);
    }
  }
  if (result.has(HEADER_KID) && !(result.get(HEADER_KID) instanceof Uint8Array)) {
    throw new DecodeError(FORMAT, `${bucket} kid must be a bstr, got ${cborType(result.get(HEADER_KID))}`);
  }
  return result;
}

function skipSign1Tag(data: Uint8Array): number {
  if (data.length === 0) throw new DecodeError(FORMAT, "empty input");
  const major = data[0]! >> 5;
  const info = data[0]! & 0x1f;
  if (major === 4) return 0;
  if (major !== 6) throw new DecodeError(FORMAT, "expected a COSE_Sign1 array, tagged 18 or untagged");
  if (info === 24 && data.length > 1 && data[1] === TAG_SIGN1) {
    throw new DecodeError(FORMAT, "tag 18 must be in its shortest form, d2 (deterministic CBOR)");
  }
  let tag: number;
  let offset: number;
  if (info < 24) {
    tag = info;
    offset = 1;
  } else if (info <= 27) {
    const size = 1 << (info - 24);
    if (data.length < 1 + size) throw new DecodeError(FORMAT, "truncated CBOR tag");
    tag = 0;
    for (let i = 0; i < size; i++) tag = tag * 256 + data[1 + i]!;
    offset = 1 + size;
  } else {
    throw new DecodeError(FORMAT, `malformed CBOR tag head 0x${data[0]!.toString(16).padStart(2, "0")}`);
  }
  if (tag !== TAG_SIGN1) {
    const name = OTHER_COSE_TAGS[tag];
    throw new DecodeError(FORMAT, `${name ? `${name} (tag ${tag})` : `CBOR tag ${tag}`} is not a COSE_Sign1 (tag ${TAG_SIGN1})`);
  }
  return offset;
}

/**
 * Parse a tagged (18) or untagged COSE_Sign1 without verifying it. Raises
 * {@link InputTooLargeError} above `maxSize` bytes, before any decoding, and
 * {@link DecodeError} for anything that is not one well-formed COSE_Sign1 of the profile.
 */
export function decodeSign1(data: unknown, maxSize = MAX_SIGN1_SIZE): Sign1Message {
  if (!(data instanceof Uint8Array)) throw new DecodeError(FORMAT, `expected bytes, got ${typeof data}`);
  if (data.length > maxSize) throw new InputTooLargeError(FORMAT, data.length, maxSize);
  const offset = skipSign1Tag(data);
  const item = decodeCbor(data, "COSE_Sign1", offset);
  if (!Array.isArray(item)) throw new DecodeError(FORMAT, `COSE_Sign1 must be an array, got ${cborType(item)}`);
  if (item.length !== 4) throw new DecodeError(FORMAT, `COSE_Sign1 must be an array of 4, got ${item.length}`);
  const [protectedBytes, unprotected, payload, signature] = item as [CborValue, CborValue, CborValue, CborValue];
  if (!(protectedBytes instanceof Uint8Array)) {
    throw new DecodeError(FORMAT, `protected header must be a bstr, got ${cborType(protectedBytes)}`);
  }
  if (!(unprotected instanceof CborMap)) {
    throw new DecodeError(FORMAT, `unprotected header must be a map, got ${cborType(unprotected)}`);
  }
  if (payload === null) throw new DecodeError(FORMAT, "detached payload (nil) is not supported");
  if (!(payload instanceof Uint8Array)) throw new DecodeError(FORMAT, `payload must be a bstr, got ${cborType(payload)}`);
  if (!(signature instanceof Uint8Array)) throw new DecodeError(FORMAT, `signature must be a bstr, got ${cborType(signature)}`);
  let protectedMap: HeaderMap = new Map();
  if (protectedBytes.length > 0) {
    const header = decodeCbor(protectedBytes, "protected header");
    if (!(header instanceof CborMap)) {
      throw new DecodeError(FORMAT, `protected header must encode a map, got ${cborType(header)}`);
    }
    protectedMap = headerMap(header, "protected");
  }
  let unprotectedMap: HeaderMap = new Map();
  if (unprotected.size > 0) {
    unprotectedMap = headerMap(unprotected, "unprotected");
    const both = [...protectedMap.keys()].filter((k) => unprotectedMap.has(k));
    if (both.length) throw new DecodeError(FORMAT, `labels ${both.map(String).join(", ")} in both header buckets`);
  }
  return { protected: protectedMap, protectedBytes, unprotected: unprotectedMap, payload, signature };
}

function bstrHead(length: number): Uint8Array {
  if (length < 24) return Uint8Array.of(0x40 | length);
  if (length <= 0xff) return Uint8Array.of(0x58, length);
  if (length <= 0xffff) return Uint8Array.of(0x59, length >> 8, length & 0xff);
  return Uint8Array.of(0x5a, length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff);
}

const SIG1_HEAD = Uint8Array.of(0x84, 0x6a, ...new TextEncoder().encode("Signature1"));

/** `["Signature1", protected, external_aad, payload]` in deterministic CBOR. */
export function sigStructure(protectedBytes: Uint8Array, externalAad: Uint8Array, payload: Uint8Array): Uint8Array {
  return concat([
    SIG1_HEAD,
    bstrHead(protectedBytes.length),
    protectedBytes,
    bstrHead(externalAad.length),
    externalAad,
    bstrHead(payload.length),
    payload,
  ]);
}

/**
 * Check `msg` against the profile and `key`; return the verified payload. Raises
 * {@link VerificationError}: `algorithm`, `crit`, `header`, `key` or `signature`.
 */
export async function verifySign1(msg: Sign1Message, key: CryptoKey, externalAad: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
  const alg = msg.protected.get(HEADER_ALG);
  if (alg === undefined) {
    let detail = "alg must be in the protected header";
    if (msg.unprotected.has(HEADER_ALG)) detail += " (it is only in the unprotected header)";
    throw new VerificationError("algorithm", detail);
  }
  if (alg !== ALG_ES256) {
    const name = typeof alg === "number" ? ALG_NAMES[alg] : undefined;
    throw new VerificationError("algorithm", `alg ${name ? `${shown(alg)} (${name})` : shown(alg)} is not ES256 (${ALG_ES256})`);
  }
  if (msg.unprotected.has(HEADER_CRIT)) throw new VerificationError("crit", "crit must be in the protected header");
  if (msg.protected.has(HEADER_CRIT)) {
    throw new VerificationError("crit", "crit is refused: nothing here is critical");
  }
  const extra = [...msg.protected.keys()].filter((k) => k !== HEADER_ALG && k !== HEADER_KID);
  if (extra.length) {
    throw new VerificationError("header", `protected labels ${extra.map((k) => shown(k)).join(", ")} are not in our profile (alg 1, kid 4)`);
  }
  const algorithm = key.algorithm as EcKeyAlgorithm;
  if (key.type !== "public" || algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
    throw new VerificationError("key", "ES256 needs a P-256 public key");
  }
  const signature = msg.signature;
  if (signature.length !== 64) {
    throw new VerificationError("signature", `ES256 signature must be 64 bytes, got ${signature.length}`);
  }
  if (isHighS(signature)) throw new VerificationError("signature", "s is above n/2: only the low-S form is accepted");
  const protectedBytes = msg.protected.size ? msg.protectedBytes : new Uint8Array(0);
  if (!(await verifyP256(key, signature, sigStructure(protectedBytes, externalAad, msg.payload)))) {
    throw new VerificationError("signature", "ES256 signature does not verify");
  }
  return msg.payload;
}

/** Whether the kid sits in the protected header. */
export function hasProtectedKid(msg: Sign1Message): boolean {
  return msg.protected.has(HEADER_KID);
}

export { equalBytes };

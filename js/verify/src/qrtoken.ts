/**
 * E-card QR tokens (`SSC1:`): CWT claims in an ES256 COSE_Sign1, base45, behind a scheme
 * prefix, as cardsvc.core.qrtoken. Each purpose discloses only its own attributes.
 */
import { b45decode } from "./base45.js";
import { b64urlEncode } from "./bytes.js";
import { CborMap, type CborValue, decodeCbor, isCborInt } from "./cbor.js";
import { decodeSign1, hasProtectedKid, messageKid, verifySign1 } from "./cose.js";
import { CoreError, DecodeError, InputTooLargeError, VerificationError } from "./errors.js";
import { gb11643CheckCharacter } from "./identity.js";
import { KeyPurpose } from "./keys.js";
import type { TrustList } from "./trustlist.js";

export const SCHEME_PREFIX = "SSC1:";
/** Version 40-L holds 4,296 alphanumeric characters; no QR token can be longer. */
export const MAX_QR_TEXT = 4296;
const CLAIM_ISS = 1;
const CLAIM_EXP = 4;
const CLAIM_IAT = 6;
const CLAIM_CTI = 7;
const CLAIM_SSC = -65537;
const MAX_NAME = 64;
const MIN_TIME = -62135596800;
const MAX_TIME = 253402300799;

/** What a QR token may be used for; each token serves exactly one. */
export const Purpose = {
  IDENTITY: 1,
  BENEFIT: 2,
  MEDICAL: 3,
  FEE: 4,
  TRANSPORT: 5,
  TOURISM: 6,
  CULTURE: 7,
} as const;
export type Purpose = (typeof Purpose)[keyof typeof Purpose];
export type PurposeName = "identity" | "benefit" | "medical" | "fee" | "transport" | "tourism" | "culture";
const PURPOSE_NAMES: Record<number, PurposeName> = {
  1: "identity",
  2: "benefit",
  3: "medical",
  4: "fee",
  5: "transport",
  6: "tourism",
  7: "culture",
};
export function purposeName(p: Purpose): PurposeName {
  return PURPOSE_NAMES[p]!;
}
/** The purpose of a lower-case name (`"transport"`), or `undefined`. */
export function purposeFromName(name: string): Purpose | undefined {
  const entry = Object.entries(PURPOSE_NAMES).find(([, n]) => n === name);
  return entry ? (Number(entry[0]) as Purpose) : undefined;
}
export function isPurposeCode(v: unknown): v is Purpose {
  return typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 7;
}

/** Attributes a token can disclose, as compact integer keys. */
export const Attribute = {
  NAME: 1,
  ID_NO: 2,
  PHOTO_REF: 3,
  CONCESSION: 4,
  CONCESSION_UNTIL: 5,
  AGE_OVER: 6,
  INSURED_REGION: 7,
} as const;
export type Attribute = (typeof Attribute)[keyof typeof Attribute];
const ATTRIBUTE_NAMES: Record<number, string> = {
  1: "name",
  2: "id_no",
  3: "photo_ref",
  4: "concession",
  5: "concession_until",
  6: "age_over",
  7: "insured_region",
};

/** Minimal disclosure: what each purpose's verifier may learn, and nothing more. */
export const PURPOSE_ATTRIBUTES: Readonly<Record<Purpose, readonly Attribute[]>> = {
  1: [Attribute.NAME, Attribute.ID_NO, Attribute.PHOTO_REF],
  2: [Attribute.NAME, Attribute.ID_NO],
  3: [Attribute.NAME, Attribute.ID_NO, Attribute.INSURED_REGION],
  4: [Attribute.NAME, Attribute.ID_NO],
  5: [Attribute.CONCESSION, Attribute.CONCESSION_UNTIL],
  6: [Attribute.CONCESSION, Attribute.AGE_OVER],
  7: [Attribute.CONCESSION, Attribute.AGE_OVER],
};

/** A disclosed attribute's value: text, bytes, a small integer, or a date (`YYYY-MM-DD`). */
export type AttributeValue = string | number | Uint8Array;

/** Disclosed attributes as JSON values keyed by lower-case name (bytes as base64url). */
export function disclosedClaims(attributes: ReadonlyMap<Attribute, AttributeValue>): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [attr, value] of attributes) out[ATTRIBUTE_NAMES[attr]!] = value instanceof Uint8Array ? b64urlEncode(value) : value;
  return out;
}

/** The contents of a verified e-card QR token. Times are epoch seconds. */
export interface QrToken {
  issuer: string;
  purpose: Purpose;
  ecardRef: Uint8Array;
  jti: Uint8Array;
  issuedAt: number;
  expiresAt: number;
  statusShard: number;
  statusIdx: number;
  /** Only the purpose's own attributes; CONCESSION_UNTIL as `YYYY-MM-DD`. */
  attributes: ReadonlyMap<Attribute, AttributeValue>;
}

/** The JSON view (schemas/qr-token.schema.json): what a verifier reports. */
export function qrTokenToJson(token: QrToken, statusBaseUri: string): Record<string, unknown> {
  return {
    iss: token.issuer,
    purpose: purposeName(token.purpose),
    ecard: b64urlEncode(token.ecardRef),
    jti: b64urlEncode(token.jti),
    iat: token.issuedAt,
    exp: token.expiresAt,
    status: statusReferenceJson(token.statusIdx, `${statusBaseUri}/${token.statusShard}`),
    attributes: disclosedClaims(token.attributes),
  };
}

/** `{status_list: {idx, uri}}`, checked as Python's StatusReference. */
export function statusReferenceJson(idx: number, uri: string): Record<string, unknown> {
  if (!(idx >= 0 && idx <= 2 ** 32 - 1)) throw new DecodeError("status reference", `idx ${idx} is out of range`);
  if (!uri.startsWith("https://") && !uri.startsWith("http://")) throw new DecodeError("status reference", "uri must be an http(s) URL");
  if ([...uri].length > 512) throw new DecodeError("status reference", "uri longer than 512");
  return { status_list: { idx, uri } };
}

/** Length in code points (Python `len`), bounded: counts at most `2 * limit` units. */
export function textLength(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** Refuse text over `limit` code points, before any decoding. */
export function checkTextSize(text: string, format: string, limit: number): void {
  if (text.length > limit && (text.length > 2 * limit || textLength(text) > limit)) {
    throw new InputTooLargeError(format, text.length > 2 * limit ? text.length : textLength(text), limit);
  }
}

const ID_NO_FORM = /^[0-9]{17}[0-9X]$/;
// C0 and C1 controls, DEL, zero-width and bidi characters, surrogates, BOM.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]/;

function dayToIso(day: number): string {
  return new Date(day * 86400000).toISOString().slice(0, 10);
}

function checkAttribute(attr: Attribute, value: CborValue): AttributeValue {
  const name = ATTRIBUTE_NAMES[attr]!.toUpperCase();
  if (attr === Attribute.NAME || attr === Attribute.INSURED_REGION || attr === Attribute.ID_NO) {
    if (typeof value !== "string" || !value || textLength(value) > MAX_NAME) {
      throw new DecodeError("qr token", `${name} must be non-empty text`);
    }
    if (CONTROL.test(value)) throw new DecodeError("qr token", `${name} contains control characters`);
    if (attr === Attribute.ID_NO && (!ID_NO_FORM.test(value) || gb11643CheckCharacter(value.slice(0, 17)) !== value[17])) {
      throw new DecodeError("qr token", "ID_NO is not a GB 11643 number (form or check character)");
    }
    return value;
  }
  if (attr === Attribute.PHOTO_REF) {
    if (!(value instanceof Uint8Array) || value.length < 1 || value.length > 32) {
      throw new DecodeError("qr token", "PHOTO_REF must be 1-32 bytes");
    }
    return value;
  }
  if (attr === Attribute.CONCESSION_UNTIL) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 100000) {
      throw new DecodeError("qr token", "CONCESSION_UNTIL must be a day number");
    }
    return dayToIso(value);
  }
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 255) {
    throw new DecodeError("qr token", `${name} must be an integer 0-255`);
  }
  return value;
}

/** Only the purpose's own attributes, each valid. */
export function checkAttributes(purpose: Purpose, raw: CborMap): Map<Attribute, AttributeValue> {
  const allowed = PURPOSE_ATTRIBUTES[purpose];
  const out = new Map<Attribute, AttributeValue>();
  for (const [key, value] of raw.entries) {
    const attr = typeof key === "number" && key >= 1 && key <= 7 ? (key as Attribute) : undefined;
    if (attr === undefined) throw new DecodeError("qr token", "unknown attribute");
    if (!allowed.includes(attr)) {
      throw new DecodeError("qr token", `${purposeName(purpose).toUpperCase()} tokens must not disclose ${ATTRIBUTE_NAMES[attr]!.toUpperCase()}`);
    }
    out.set(attr, checkAttribute(attr, value));
  }
  return out;
}

function checkScalars(issuer: CborValue, ecardRef: CborValue, jti: CborValue, shard: CborValue, idx: CborValue): void {
  if (typeof issuer !== "string" || issuer.length === 0 || textLength(issuer) > 64) {
    throw new DecodeError("qr token", "issuer must be 1-64 characters");
  }
  if (!(ecardRef instanceof Uint8Array) || ecardRef.length !== 8) throw new DecodeError("qr token", "e-card reference must be 8 bytes");
  if (!(jti instanceof Uint8Array) || jti.length !== 8) throw new DecodeError("qr token", "jti must be 8 bytes");
  if (typeof shard !== "number" || typeof idx !== "number" || !(shard >= 0 && shard < 2 ** 32 && idx >= 0 && idx < 2 ** 32)) {
    throw new DecodeError("qr token", "status shard and index must be integers 0..2^32-1");
  }
}

const CLAIM_KEYS = [CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_SSC];

/** The token from verified CWT claims, each checked once (as Python's from_cbor_claims). */
export function qrTokenFromClaims(claims: CborValue): QrToken {
  if (!(claims instanceof CborMap)) throw new DecodeError("qr token", "claims must be a CBOR map");
  if (!claims.hasExactKeys(CLAIM_KEYS)) throw new VerificationError("claims", "missing or unknown claims");
  const ssc = claims.get(CLAIM_SSC);
  if (!(ssc instanceof CborMap) || !(ssc.hasExactKeys([1, 2, 3, 4]) || ssc.hasExactKeys([1, 2, 3]))) {
    throw new VerificationError("claims", "private claim map is malformed");
  }
  const status = ssc.get(3);
  if (!Array.isArray(status) || status.length !== 2) throw new VerificationError("claims", "status must be [shard, index]");
  const rawAttrs = ssc.has(4) ? ssc.get(4) : new CborMap([]);
  if (!(rawAttrs instanceof CborMap)) throw new VerificationError("claims", "attributes must be a map");
  const iat = claims.get(CLAIM_IAT);
  const exp = claims.get(CLAIM_EXP);
  try {
    const purpose = ssc.get(1);
    if (!isPurposeCode(purpose)) throw new DecodeError("qr token", "purpose must be an integer 1-7");
    if (!isCborInt(iat) || !isCborInt(exp)) throw new DecodeError("qr token", "iat and exp must be integers");
    if (exp <= iat) throw new DecodeError("qr token", "expires before it is issued");
    const issuer = claims.get(CLAIM_ISS)!;
    const ecardRef = ssc.get(2)!;
    const jti = claims.get(CLAIM_CTI)!;
    for (const t of [iat, exp]) {
      if (typeof t !== "number" || t < MIN_TIME || t > MAX_TIME) throw new VerificationError("claims", "malformed claim: time out of range");
    }
    checkScalars(issuer, ecardRef, jti, status[0]!, status[1]!);
    const attributes = checkAttributes(purpose, rawAttrs);
    return {
      issuer: issuer as string,
      purpose,
      ecardRef: ecardRef as Uint8Array,
      jti: jti as Uint8Array,
      issuedAt: iat as number,
      expiresAt: exp as number,
      statusShard: status[0] as number,
      statusIdx: status[1] as number,
      attributes,
    };
  } catch (e) {
    if (e instanceof VerificationError) throw e;
    if (e instanceof CoreError) throw new VerificationError("claims", e.detail);
    throw e;
  }
}

/** Options of the token verifiers; times in epoch seconds. */
export interface TokenOptions {
  trustList: TrustList;
  now: number;
  leeway: number;
  purpose?: Purpose | null;
}

/**
 * Verify `SSC1:` QR text and return the token. Checks, in order: size and prefix,
 * base45, COSE_Sign1, the `ecard` key by its short kid, the signature, the claims, the
 * window (`issued-in-future`, `expired`, `key-window`) and the `purpose`. Replay and
 * status are the caller's (see {@link OfflineVerifier}).
 */
export async function verifyQrToken(text: unknown, opts: TokenOptions): Promise<QrToken> {
  if (typeof text !== "string") throw new DecodeError("qr token", "QR text must be a string");
  checkTextSize(text, "qr token", MAX_QR_TEXT);
  if (!text.startsWith(SCHEME_PREFIX)) throw new DecodeError("qr token", `not a ${SCHEME_PREFIX} token`);
  const message = decodeSign1(b45decode(text.slice(SCHEME_PREFIX.length)));
  const kid = messageKid(message);
  if (kid === null || !hasProtectedKid(message)) throw new VerificationError("key-unknown", "kid must be in the protected header");
  const trusted = opts.trustList.findShort(kid, KeyPurpose.ECARD, opts.now);
  const payload = await verifySign1(message, trusted.key.cryptoKey);
  const claims = decodeCbor(payload, "CWT claims");
  const token = qrTokenFromClaims(claims);
  const { now, leeway } = opts;
  if (token.issuedAt > now + leeway) throw new VerificationError("issued-in-future", `iat ${token.issuedAt} is after now ${Math.trunc(now)}`);
  if (token.expiresAt <= now - leeway) throw new VerificationError("expired", `exp ${token.expiresAt} is not after now ${Math.trunc(now)}`);
  if (token.issuedAt < trusted.notBefore - leeway) throw new VerificationError("key-window", "signed before its key was valid");
  if (opts.purpose != null && token.purpose !== opts.purpose) {
    throw new VerificationError("purpose", `token is for ${purposeName(token.purpose)}, not ${purposeName(opts.purpose)}`);
  }
  return token;
}

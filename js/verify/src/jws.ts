/** Compact JWS (RFC 7515) under RFC 8725 rules, as cardsvc.core.jws. */
import { canonicalB64urlDecode, isAscii } from "./bytes.js";
import { isHighS, verifyP256 } from "./ecdsa.js";
import { DecodeError, InputTooLargeError, VerificationError, shown } from "./errors.js";
import { JsonFloat, type JsonObject, strictJsonObject } from "./json.js";
import { ES256, type VerifyingKey } from "./keys.js";

/** Default upper bound on a compact JWS, checked before any decoding. */
export const MAX_JWS_SIZE = 64 * 1024;
/** 9999-12-31T23:59:59Z: later NumericDates are refused. */
export const MAX_NUMERIC_DATE = 253402300799;

export interface VerifiedJws {
  header: JsonObject;
  claims: JsonObject;
  key: VerifyingKey;
}

function numericDate(claims: JsonObject, name: string): number | null {
  if (!(name in claims)) return null;
  const value = claims[name];
  let n: number;
  if (typeof value === "number") n = value;
  else if (value instanceof JsonFloat) n = value.value;
  else if (typeof value === "bigint") n = Number(value);
  else throw new VerificationError("claims", `${name} must be a NumericDate`);
  if (!(n >= 0 && n <= MAX_NUMERIC_DATE)) throw new VerificationError("claims", `${name} must be a NumericDate`);
  return Math.trunc(n);
}

/** Check `iat`/`nbf`/`exp` (seconds) against `now` (seconds) with an explicit leeway. */
export function checkTimes(
  claims: JsonObject,
  now: number,
  leeway: number,
  require: readonly string[] = ["iat", "exp"],
): void {
  for (const name of require) {
    if (!(name in claims)) throw new VerificationError("claims", `missing required claim ${name}`);
  }
  const iat = numericDate(claims, "iat");
  const nbf = numericDate(claims, "nbf");
  const exp = numericDate(claims, "exp");
  const t = Math.trunc(now);
  if (iat !== null && exp !== null && exp < iat) throw new VerificationError("claims", "exp is before iat");
  if (iat !== null && iat > now + leeway) throw new VerificationError("issued-in-future", `iat ${iat} is after now ${t}`);
  if (nbf !== null && nbf > now + leeway) throw new VerificationError("not-yet-valid", `nbf ${nbf} is after now ${t}`);
  if (exp !== null && exp <= now - leeway) throw new VerificationError("expired", `exp ${exp} is not after now ${t}`);
}

/**
 * Verify a compact JWS signature; return its header and claims. `typ` is the accepted
 * header typ; `keyFor` gets the parsed header and returns the key or throws a
 * {@link VerificationError}. Times are not checked here ({@link checkTimes}).
 */
export async function verifyJws(
  token: unknown,
  opts: { typ: string; keyFor: (header: JsonObject) => VerifyingKey; maxSize?: number },
): Promise<VerifiedJws> {
  const maxSize = opts.maxSize ?? MAX_JWS_SIZE;
  if (typeof token !== "string") throw new DecodeError("jws", "token must be text");
  if (token.length > maxSize) throw new InputTooLargeError("jws", token.length, maxSize);
  const parts = token.split(".");
  if (parts.length !== 3 || !isAscii(token)) throw new DecodeError("jws", "not a compact JWS (three base64url parts)");
  const [h, p, s] = parts as [string, string, string];
  const header = strictJsonObject(canonicalB64urlDecode(h, "jws", "header"), "jws header");
  if ("crit" in header) throw new VerificationError("crit", "critical header parameters are not supported");
  if ("b64" in header) throw new DecodeError("jws", "the b64 header (unencoded payload) is not supported");
  if ("kid" in header && typeof header["kid"] !== "string") {
    throw new DecodeError("jws", "kid must be a string (RFC 7515 section 4.1.4)");
  }
  const headerTyp = header["typ"];
  if (headerTyp !== opts.typ) {
    throw new VerificationError("typ", `typ must be ${JSON.stringify(opts.typ)}, got ${shown(headerTyp ?? null)}`);
  }
  for (const name of ["jku", "jwk", "x5u", "x5c"]) {
    if (name in header) throw new VerificationError("key-unknown", `header parameter ${name} is not accepted`);
  }
  const key = opts.keyFor(header);
  if (header["alg"] !== key.alg) {
    throw new VerificationError("algorithm", `header alg ${shown(header["alg"] ?? null)} is not the key's ${key.alg}`);
  }
  if (key.alg !== ES256) throw new VerificationError("algorithm", `key algorithm ${key.alg} is not supported`);
  const signature = canonicalB64urlDecode(s, "jws", "signature");
  const payload = canonicalB64urlDecode(p, "jws", "payload");
  if (isHighS(signature)) throw new VerificationError("signature", "s is above n/2: only the low-S form is accepted");
  if (!(await verifyP256(key.cryptoKey, signature, new TextEncoder().encode(`${h}.${p}`)))) {
    throw new VerificationError("signature", "signature does not verify");
  }
  const claims = strictJsonObject(payload, "jws payload");
  return { header, claims, key };
}

/**
 * Device-bound offline QR tokens (`SSC2:`): the phone signs its credential into a
 * 30-second time slot, as cardsvc.core.devicebound.
 */
import { b45decode } from "./base45.js";
import { b64urlEncode, concat, equalBytes } from "./bytes.js";
import { decodeCbor, isCborInt } from "./cbor.js";
import { HEADER_KID, type Sign1Message, decodeSign1, verifySign1 } from "./cose.js";
import { type CompactCredential, verifyCompactCredential } from "./credential.js";
import { DecodeError, VerificationError } from "./errors.js";
import {
  MAX_QR_TEXT,
  type Purpose,
  type TokenOptions,
  checkTextSize,
  disclosedClaims,
  isPurposeCode,
  purposeName,
  statusReferenceJson,
} from "./qrtoken.js";

export const DEVICE_SCHEME_PREFIX = "SSC2:";
export const SLOT_SECONDS = 30;
/** A verifier accepts the current slot and at most this many either side. */
export const MAX_SKEW_SLOTS = 1;
const MAX_U32 = 2 ** 32 - 1;
const FORMAT = "device-bound token";

/** The 30-second slot `now` (epoch seconds) falls in. */
export function slotOf(now: number): number {
  return Math.floor(Math.trunc(now) / SLOT_SECONDS);
}

/** A verified device-bound presentation: the credential, its slot and counter. */
export interface DeviceBoundToken {
  credential: CompactCredential;
  slot: number;
  counter: number;
}

function u32(n: number): Uint8Array {
  return Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** (e-card, slot, counter): what a verifier remembers to refuse a second showing. */
export function deviceReplayKey(token: DeviceBoundToken): Uint8Array {
  return concat([token.credential.ecardRef, u32(token.slot), u32(token.counter)]);
}

/** When the last verifier allowing one slot of skew stops accepting this code (seconds). */
export function deviceValidUntil(token: DeviceBoundToken): number {
  return Math.min((token.slot + 1 + MAX_SKEW_SLOTS) * SLOT_SECONDS, token.credential.expiresAt);
}

/** The JSON view (schemas/device-bound-token.schema.json). */
export async function deviceBoundToJson(token: DeviceBoundToken, statusBaseUri: string): Promise<Record<string, unknown>> {
  const c = token.credential;
  return {
    iss: c.issuer,
    purpose: purposeName(c.purpose),
    ecard: b64urlEncode(c.ecardRef),
    device_kid: await c.deviceKey.kid(),
    exp: c.expiresAt,
    slot: token.slot,
    counter: token.counter,
    status: statusReferenceJson(c.statusIdx, `${statusBaseUri}/${c.statusShard}`),
    attributes: disclosedClaims(c.attributes),
  };
}

function parse(text: unknown): [Sign1Message, Uint8Array, number, number, Purpose] {
  if (typeof text !== "string") throw new DecodeError(FORMAT, "QR text must be a string");
  checkTextSize(text, FORMAT, MAX_QR_TEXT);
  if (!text.startsWith(DEVICE_SCHEME_PREFIX)) throw new DecodeError(FORMAT, `not a ${DEVICE_SCHEME_PREFIX} token`);
  const wrapper = decodeSign1(b45decode(text.slice(DEVICE_SCHEME_PREFIX.length)));
  const body = decodeCbor(wrapper.payload, "device-bound payload");
  if (!Array.isArray(body) || body.length !== 4) throw new DecodeError(FORMAT, "payload must be [credential, slot, counter, purpose]");
  const [credential, slot, counter, purpose] = body;
  if (!(credential instanceof Uint8Array)) throw new DecodeError(FORMAT, "credential must be a byte string");
  if (!isCborInt(slot) || typeof slot !== "number" || slot < 0 || slot > MAX_U32) throw new DecodeError(FORMAT, `slot must be an integer 0..${MAX_U32}`);
  if (!isCborInt(counter) || typeof counter !== "number" || counter < 0 || counter > MAX_U32) {
    throw new DecodeError(FORMAT, `counter must be an integer 0..${MAX_U32}`);
  }
  if (!isPurposeCode(purpose)) throw new DecodeError(FORMAT, "purpose must be a purpose code 1-7");
  return [wrapper, credential, slot, counter, purpose];
}

/**
 * Verify an `SSC2:` device-bound QR text. Checks, in order: size and prefix, base45, the
 * wrapper, the credential (`key-unknown`, `key-purpose`, `key-window`, `signature`,
 * `claims`, `expired`), `device-mismatch`, `device-signature`, `purpose`, `slot`.
 */
export async function verifyDeviceBound(text: unknown, opts: TokenOptions & { skewSlots?: number }): Promise<DeviceBoundToken> {
  const skew = opts.skewSlots ?? MAX_SKEW_SLOTS;
  if (!Number.isInteger(skew) || skew < 0 || skew > MAX_SKEW_SLOTS) throw new RangeError(`skewSlots must be 0..${MAX_SKEW_SLOTS}`);
  const [wrapper, raw, slot, counter, wrapped] = parse(text);
  const credential = await verifyCompactCredential(raw, opts);
  const hint = wrapper.protected.get(HEADER_KID);
  if (!(hint instanceof Uint8Array) || !equalBytes(hint, credential.devicePoint.subarray(1, 5))) {
    throw new VerificationError("device-mismatch", "signed by another device than the one the e-card is bound to");
  }
  try {
    await verifySign1(wrapper, credential.deviceKey.cryptoKey);
  } catch (e) {
    if (e instanceof VerificationError && e.check === "signature") {
      throw new VerificationError("device-signature", "the device signature does not verify with the bound key");
    }
    throw e;
  }
  if (wrapped !== credential.purpose) {
    throw new VerificationError("purpose", `wrapped for ${purposeName(wrapped)}, credential is for ${purposeName(credential.purpose)}`);
  }
  if (opts.purpose != null && credential.purpose !== opts.purpose) {
    throw new VerificationError("purpose", `token is for ${purposeName(credential.purpose)}, not ${purposeName(opts.purpose)}`);
  }
  const current = slotOf(opts.now);
  if (Math.abs(slot - current) > skew) {
    throw new VerificationError("slot", `made for slot ${slot}, now is slot ${current} (at most ${skew} apart)`);
  }
  return { credential, slot, counter };
}

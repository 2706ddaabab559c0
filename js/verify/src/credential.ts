/**
 * The compact e-card credential (an issuer-signed COSE_Sign1 over a CBOR map carrying the
 * bound device key), as cardsvc.core.credential.
 */
import { CborMap, type CborValue, decodeCbor } from "./cbor.js";
import { decodeSign1, hasProtectedKid, messageKid, verifySign1 } from "./cose.js";
import { decompressP256, importRawP256, thumbprint, uncompressed } from "./ecdsa.js";
import { DecodeError, VerificationError } from "./errors.js";
import { KeyPurpose } from "./keys.js";
import { type Attribute, type AttributeValue, type Purpose, qrTokenFromClaims } from "./qrtoken.js";
import type { TrustList } from "./trustlist.js";

/** Far above any real credential; checked before decoding. */
export const MAX_CREDENTIAL_SIZE = 1024;

/** A verified device-bound e-card credential for one purpose. */
export interface CompactCredential {
  issuer: string;
  purpose: Purpose;
  ecardRef: Uint8Array;
  statusShard: number;
  statusIdx: number;
  /** The bound device key, a 33-byte compressed P-256 point. */
  devicePoint: Uint8Array;
  /** The bound device key (its {@link DeviceKey.kid} is the e-card's `device_kid`). */
  deviceKey: DeviceKey;
  expiresAt: number;
  attributes: ReadonlyMap<Attribute, AttributeValue>;
}

/** A device key bound to a credential; its thumbprint is computed only when asked for. */
export class DeviceKey {
  private thumbprint: Promise<string> | null = null;
  constructor(readonly cryptoKey: CryptoKey) {}

  /** The RFC 7638 thumbprint (the e-card's `device_kid`). */
  kid(): Promise<string> {
    this.thumbprint ??= crypto.subtle.exportKey("jwk", this.cryptoKey).then((jwk) => thumbprint(jwk.x!, jwk.y!));
    return this.thumbprint;
  }
}

async function deviceKey(point: CborValue): Promise<DeviceKey> {
  if (!(point instanceof Uint8Array) || point.length !== 33 || (point[0] !== 2 && point[0] !== 3)) {
    throw new VerificationError("claims", "device key must be a 33-byte compressed P-256 point");
  }
  // Node's WebCrypto imports compressed points itself (~0.2 ms); Chromium's does not, so
  // the point is decompressed here (~0.3 ms of BigInt arithmetic) and imported whole.
  try {
    return new DeviceKey(await importRawP256(point));
  } catch {
    // fall through
  }
  const xy = decompressP256(point);
  if (xy === null) throw new VerificationError("claims", "device key is not a point on P-256");
  try {
    return new DeviceKey(await importRawP256(uncompressed(xy.x, xy.y)));
  } catch {
    throw new VerificationError("claims", "device key is not a point on P-256");
  }
}

/** Parse verified credential claims; `claims` VerificationError if malformed. */
export async function credentialFromClaims(claims: CborValue, issuer: string): Promise<CompactCredential> {
  if (!(claims instanceof CborMap) || !(claims.hasExactKeys([1, 2, 3, 4, 5, 6]) || claims.hasExactKeys([1, 2, 3, 5, 6]))) {
    throw new VerificationError("claims", "credential claims must be keys 1-6 (4 optional)");
  }
  const exp = claims.get(6);
  if (typeof exp !== "number" || !(exp > 0 && exp < 2 ** 40)) throw new VerificationError("claims", "exp must be a positive integer");
  const point = claims.get(5)!;
  const device = await deviceKey(point);
  const ssc = new CborMap(claims.entries.filter(([k]) => k !== 5 && k !== 6));
  const token = qrTokenFromClaims(
    new CborMap([
      [1, issuer],
      [4, exp],
      [6, exp - 1],
      [7, new Uint8Array(8)],
      [-65537, ssc],
    ]),
  );
  return {
    issuer,
    purpose: token.purpose,
    ecardRef: token.ecardRef,
    statusShard: token.statusShard,
    statusIdx: token.statusIdx,
    devicePoint: point as Uint8Array,
    deviceKey: device,
    expiresAt: exp,
    attributes: token.attributes,
  };
}

/**
 * Verify a compact credential's issuer signature, claims and expiry: size, COSE_Sign1,
 * the `ecard` key by short kid, the signature, the claims, `exp` with `leeway`.
 */
export async function verifyCompactCredential(
  data: unknown,
  opts: { trustList: TrustList; now: number; leeway: number },
): Promise<CompactCredential> {
  if (!(data instanceof Uint8Array)) throw new DecodeError("compact credential", "credential must be bytes");
  const message = decodeSign1(data, MAX_CREDENTIAL_SIZE);
  const kid = messageKid(message);
  if (kid === null || !hasProtectedKid(message)) throw new VerificationError("key-unknown", "kid must be in the protected header");
  const trusted = opts.trustList.findShort(kid, KeyPurpose.ECARD, opts.now);
  const payload = await verifySign1(message, trusted.key.cryptoKey);
  const claims = decodeCbor(payload, "credential claims");
  const credential = await credentialFromClaims(claims, opts.trustList.issuer);
  if (credential.expiresAt <= opts.now - opts.leeway) {
    throw new VerificationError("expired", `credential expired at ${new Date(credential.expiresAt * 1000).toISOString()}`);
  }
  return credential;
}

/** Public keys as JWKs, their thumbprints, and the purposes a key may sign for. */
import { canonicalB64urlDecode } from "./bytes.js";
import { importJwkP256, thumbprint } from "./ecdsa.js";
import { DecodeError } from "./errors.js";

export const ES256 = "ES256";

/** What an issuing key may sign. A key signs for exactly one purpose. */
export const KeyPurpose = {
  ROOT: "root",
  CARD_DOCUMENT: "card-document",
  ECARD: "ecard",
  STATUS_LIST: "status-list",
  TERMINAL_CERTIFICATE: "terminal-certificate",
  AUDIT_CHECKPOINT: "audit-checkpoint",
  ACCESS_TOKEN: "access-token",
} as const;
export type KeyPurpose = (typeof KeyPurpose)[keyof typeof KeyPurpose];
const PURPOSES: ReadonlySet<string> = new Set(Object.values(KeyPurpose));
export function isKeyPurpose(v: unknown): v is KeyPurpose {
  return typeof v === "string" && PURPOSES.has(v);
}

/** A public P-256 JWK (the members this package reads). */
export interface PublicJwk {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
  kid?: string;
  alg?: string;
}

/** A P-256 public key with the one algorithm it verifies (ES256) and its thumbprint `kid`. */
export class VerifyingKey {
  readonly alg = ES256;
  private constructor(
    readonly kid: string,
    readonly x: string,
    readonly y: string,
    readonly cryptoKey: CryptoKey,
  ) {}

  /**
   * Build from a public JWK (an object, already parsed); an `alg` member, if any, must be
   * ES256. Raises {@link DecodeError} for anything but a canonical P-256 public point.
   */
  static async fromJwk(jwk: unknown): Promise<VerifyingKey> {
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new DecodeError("jwk", "not a JSON object");
    const obj = jwk as Record<string, unknown>;
    if ("alg" in obj && obj["alg"] !== ES256) {
      throw new DecodeError("jwk", `alg ${JSON.stringify(obj["alg"])?.slice(0, 40)} does not match a P-256 key (ES256)`);
    }
    if (obj["kty"] !== "EC" || obj["crv"] !== "P-256") throw new DecodeError("jwk", "only kty EC with crv P-256 is accepted");
    if ("d" in obj) throw new DecodeError("jwk", "a public JWK must not contain the private member d");
    const coords: string[] = [];
    for (const name of ["x", "y"]) {
      const value = obj[name];
      if (typeof value !== "string") throw new DecodeError("jwk", `member ${name} missing or not a string`);
      let raw: Uint8Array;
      try {
        raw = canonicalB64urlDecode(value, "jwk", `member ${name}`);
      } catch {
        throw new DecodeError("jwk", `member ${name} is not canonical base64url`);
      }
      if (raw.length !== 32) throw new DecodeError("jwk", `member ${name} must be 32 bytes, got ${raw.length}`);
      coords.push(value);
    }
    const [x, y] = coords as [string, string];
    let key: CryptoKey;
    try {
      key = await importJwkP256(x, y);
    } catch {
      throw new DecodeError("jwk", "point is not on the P-256 curve");
    }
    return new VerifyingKey(await thumbprint(x, y), x, y, key);
  }

  /** The public JWK with `kid` and `alg`. */
  jwk(): Required<PublicJwk> {
    return { kty: "EC", crv: "P-256", x: this.x, y: this.y, kid: this.kid, alg: this.alg };
  }
}

/** The 8-byte form of a `kid` carried in QR tokens. */
export function shortKid(kid: string): Uint8Array {
  return canonicalB64urlDecode(kid, "kid", "kid").slice(0, 8);
}

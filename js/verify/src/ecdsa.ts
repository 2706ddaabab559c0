/** ECDSA P-256 / SHA-256 through WebCrypto (`globalThis.crypto.subtle`), and SHA-256. */
import { b64urlEncode, concat } from "./bytes.js";

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new Error(
      "@cardsvc/verify needs WebCrypto (globalThis.crypto.subtle): a secure context in browsers, Node 20+",
    );
  }
  return s;
}

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** The order n of the P-256 group, and its half. */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_ORDER = P256_ORDER >> 1n;
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;

function bigFrom(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function bigTo32(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 31; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/** Whether a raw 64-byte r||s signature has s above n/2 (not the low-S form). */
export function isHighS(signature: Uint8Array): boolean {
  return signature.length === 64 && bigFrom(signature.subarray(32)) > HALF_ORDER;
}

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest("SHA-256", data as BufferSource));
}

/** Import a P-256 public key from JWK coordinates (base64url); throws if not on the curve. */
export async function importJwkP256(x: string, y: string): Promise<CryptoKey> {
  return subtle().importKey("jwk", { kty: "EC", crv: "P-256", x, y, ext: true }, ECDSA_P256, true, ["verify"]);
}

/** Import from an uncompressed SEC1 point (65 bytes). */
export async function importRawP256(point: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey("raw", point as BufferSource, ECDSA_P256, true, ["verify"]);
}

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
    exp >>= 1n;
  }
  return result;
}

/**
 * The (x, y) of a 33-byte compressed P-256 point, or `null` if it is not on the curve.
 * Done here because WebCrypto does not import compressed points everywhere (Chromium).
 */
export function decompressP256(point: Uint8Array): { x: Uint8Array; y: Uint8Array } | null {
  if (point.length !== 33 || (point[0] !== 2 && point[0] !== 3)) return null;
  const x = bigFrom(point.subarray(1));
  if (x >= P) return null;
  const rhs = (((x * x * x - 3n * x + B) % P) + P) % P;
  let y = modPow(rhs, (P + 1n) >> 2n, P); // P = 3 mod 4
  if ((y * y) % P !== rhs) return null;
  if (Number(y & 1n) !== (point[0] & 1)) y = P - y;
  return { x: bigTo32(x), y: bigTo32(y) };
}

/** The uncompressed SEC1 form of (x, y). */
export function uncompressed(x: Uint8Array, y: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(4), x, y]);
}

/** Verify a raw r||s ES256 signature of `data`. */
export async function verifyP256(key: CryptoKey, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  if (signature.length !== 64) return false;
  return subtle().verify(ECDSA_SHA256, key, signature as BufferSource, data as BufferSource);
}

/** The RFC 7638 thumbprint input of a P-256 key: its required members, sorted. */
export function thumbprintInput(x: string, y: string): string {
  return `{"crv":"P-256","kty":"EC","x":"${x}","y":"${y}"}`;
}

export async function thumbprint(x: string, y: string): Promise<string> {
  return b64urlEncode(await sha256(new TextEncoder().encode(thumbprintInput(x, y))));
}

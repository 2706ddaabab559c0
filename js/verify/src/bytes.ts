/** Byte helpers: comparison, concatenation, hex, base64url (strict), UTF-8. */
import { DecodeError } from "./errors.js";

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytewise lexicographic comparison: negative, zero or positive. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function toHex(data: Uint8Array): string {
  let s = "";
  for (const b of data) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(text: string): Uint8Array | null {
  if (text.length % 2 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_VALUE[B64.charCodeAt(i)] = i;

/** Base64url without padding (RFC 7515 section 2). */
export function b64urlEncode(data: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < data.length; i += 3) {
    const n = (data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = data.length - i;
  if (rest === 1) {
    const n = data[i]! << 16;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (data[i]! << 16) | (data[i + 1]! << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]!;
  }
  return out;
}

/**
 * Decode unpadded base64url, refusing anything a strict encoder would not produce: no
 * padding, nothing outside the alphabet, zero unused bits in the last character.
 */
export function canonicalB64urlDecode(text: unknown, formatName: string, what: string): Uint8Array {
  if (typeof text !== "string") throw new DecodeError(formatName, `${what} is not unpadded base64url`);
  const rest = text.length % 4;
  const values = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? B64_VALUE[c]! : -1;
    if (v < 0) throw new DecodeError(formatName, `${what} is not unpadded base64url`);
    values[i] = v;
  }
  if (rest === 1) throw new DecodeError(formatName, `${what} has an impossible base64url length`);
  if (rest && values[text.length - 1]! & (rest === 2 ? 0x0f : 0x03)) {
    throw new DecodeError(formatName, `${what} is not canonical base64url`);
  }
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 3 < text.length; i += 4) {
    const n = (values[i]! << 18) | (values[i + 1]! << 12) | (values[i + 2]! << 6) | values[i + 3]!;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  if (rest === 2) {
    out[o++] = (values[i]! << 2) | (values[i + 1]! >> 4);
  } else if (rest === 3) {
    const n = (values[i]! << 12) | (values[i + 1]! << 6) | values[i + 2]!;
    out[o++] = n >> 10;
    out[o++] = (n >> 2) & 0xff;
  }
  return out;
}

const FATAL_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8 = new TextEncoder();

/** Strict UTF-8 decoding; `null` for invalid input. */
export function utf8Decode(data: Uint8Array): string | null {
  try {
    return FATAL_UTF8.decode(data);
  } catch {
    return null;
  }
}

export function utf8Encode(text: string): Uint8Array {
  return UTF8.encode(text);
}

/** Whether every character is ASCII (as Python's str.isascii). */
export function isAscii(text: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(text);
}

/** Base45 (RFC 9285): the text form of COSE tokens in QR codes. */
import { DecodeError } from "./errors.js";

const FORMAT = "base45";
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
const TABLE = new Uint8Array(128).fill(0xff);
for (let i = 0; i < ALPHABET.length; i++) TABLE[ALPHABET.charCodeAt(i)] = i;

function digit(text: string, pos: number): number {
  const code = text.charCodeAt(pos);
  const value = code < 128 ? TABLE[code]! : 0xff;
  if (value === 0xff) {
    if (code >= 128) throw new DecodeError(FORMAT, `non-ASCII character at position ${pos}`);
    throw new DecodeError(FORMAT, `invalid character ${JSON.stringify(text[pos])} at position ${pos}`);
  }
  return value;
}

/**
 * Decode base45 text. Raises {@link DecodeError} for a character outside the alphabet
 * (lower case included), a length of 1 modulo 3, or a group whose value does not fit.
 */
export function b45decode(text: string): Uint8Array {
  if (typeof text !== "string") throw new DecodeError(FORMAT, `expected text, got ${typeof text}`);
  // Every character is checked first, as in Python (the first bad one is reported).
  for (let i = 0; i < text.length; i++) digit(text, i);
  const triples = Math.floor(text.length / 3);
  const rest = text.length % 3;
  if (rest === 1) throw new DecodeError(FORMAT, `length ${text.length} is 1 modulo 3`);
  const out = new Uint8Array(2 * triples + (rest >> 1));
  let o = 0;
  for (let i = 0; i < 3 * triples; i += 3) {
    const value = digit(text, i) + 45 * digit(text, i + 1) + 2025 * digit(text, i + 2);
    if (value > 0xffff) {
      throw new DecodeError(FORMAT, `triple ${JSON.stringify(text.slice(i, i + 3))} at position ${i} exceeds 65535`);
    }
    out[o++] = value >> 8;
    out[o++] = value & 0xff;
  }
  if (rest) {
    const end = 3 * triples;
    const value = digit(text, end) + 45 * digit(text, end + 1);
    if (value > 0xff) throw new DecodeError(FORMAT, `final pair ${JSON.stringify(text.slice(end))} exceeds 255`);
    out[o] = value;
  }
  return out;
}

/** Encode bytes as base45 text (RFC 9285 section 4); for tests and tools. */
export function b45encode(data: Uint8Array): string {
  let text = "";
  let i = 0;
  for (; i + 1 < data.length; i += 2) {
    let n = (data[i]! << 8) | data[i + 1]!;
    const c = n % 45;
    n = (n - c) / 45;
    const d = n % 45;
    const e = (n - d) / 45;
    text += ALPHABET[c]! + ALPHABET[d]! + ALPHABET[e]!;
  }
  if (i < data.length) {
    const n = data[i]!;
    text += ALPHABET[n % 45]! + ALPHABET[Math.floor(n / 45)]!;
  }
  return text;
}

/**
 * A strict decoder for deterministic CBOR (RFC 8949 section 4.2.1), the profile of
 * everything the issuer signs (docs/verifying.md, "Encoding profile").
 *
 * Shortest heads, definite lengths, map keys in the bytewise order of their encodings
 * (so no duplicate), no floats, no tags, nesting at most 16 containers deep, valid UTF-8,
 * no trailing bytes. Any failure is a {@link DecodeError} of format `cose`, as in Python.
 * Written here rather than taken from a library: a general CBOR library decodes first
 * and would need the encoding re-checked; this one refuses while it reads, in ~200 lines.
 */
import { compareBytes, utf8Decode } from "./bytes.js";
import { DecodeError } from "./errors.js";

/** A CBOR simple value other than false, true, null and undefined. */
export class CborSimple {
  constructor(readonly value: number) {}
}

/** A decoded CBOR map: its entries in order, and lookups by integer or text key. */
export class CborMap {
  readonly entries: ReadonlyArray<readonly [CborValue, CborValue]>;
  private readonly index = new Map<string, CborValue>();
  constructor(entries: Array<readonly [CborValue, CborValue]>) {
    this.entries = entries;
    for (const [k, v] of entries) {
      const id = keyId(k);
      if (id !== null) this.index.set(id, v);
    }
  }
  get size(): number {
    return this.entries.length;
  }
  has(key: number | string): boolean {
    return this.index.has(keyId(key)!);
  }
  get(key: number | string): CborValue | undefined {
    return this.index.get(keyId(key)!);
  }
  keys(): CborValue[] {
    return this.entries.map(([k]) => k);
  }
  /** Whether the keys are exactly `keys` (integers or text), in any order. */
  hasExactKeys(keys: ReadonlyArray<number | string>): boolean {
    if (this.entries.length !== keys.length) return false;
    return keys.every((k) => this.has(k));
  }
}

function keyId(key: CborValue): string | null {
  if (typeof key === "number" || typeof key === "bigint") return `i${key}`;
  if (typeof key === "string") return `s${key}`;
  return null;
}

export type CborValue =
  | number
  | bigint
  | string
  | boolean
  | null
  | undefined
  | Uint8Array
  | CborValue[]
  | CborMap
  | CborSimple;

/** Whether `v` is a CBOR integer (never a boolean). */
export function isCborInt(v: unknown): v is number | bigint {
  return (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
}

const MAX_DEPTH = 16;
const FORMAT = "cose";

class Reader {
  pos: number;
  constructor(
    readonly data: Uint8Array,
    start: number,
    readonly what: string,
  ) {
    this.pos = start;
  }

  fail(reason: string): never {
    throw new DecodeError(FORMAT, `invalid CBOR in ${this.what}: ${reason}`);
  }

  notDeterministic(): never {
    throw new DecodeError(
      FORMAT,
      `${this.what} is not deterministic CBOR (RFC 8949 section 4.2.1): a head longer than needed`,
    );
  }

  /** The argument of a head with additional information `info`, shortest form enforced. */
  argument(info: number): number | bigint {
    const d = this.data;
    if (info < 24) return info;
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (size === 0) this.fail(info === 31 ? "indefinite length is not allowed" : `reserved additional information ${info}`);
    if (this.pos + size > d.length) this.fail("premature end of data");
    let value: number | bigint;
    if (size === 8) {
      let big = 0n;
      for (let i = 0; i < 8; i++) big = (big << 8n) | BigInt(d[this.pos + i]!);
      value = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      if (big < 0x100000000n) this.notDeterministic();
    } else {
      let n = 0;
      for (let i = 0; i < size; i++) n = n * 256 + d[this.pos + i]!;
      value = n;
      if ((size === 1 && n < 24) || (size === 2 && n < 0x100) || (size === 4 && n < 0x10000)) this.notDeterministic();
    }
    this.pos += size;
    return value;
  }

  length(info: number): number {
    const n = this.argument(info);
    if (typeof n === "bigint" || n > this.data.length - this.pos) this.fail("premature end of data");
    return n;
  }

  item(depth: number): CborValue {
    const d = this.data;
    if (this.pos >= d.length) this.fail("premature end of data");
    const head = d[this.pos++]!;
    const major = head >> 5;
    const info = head & 0x1f;
    switch (major) {
      case 0:
        return this.argument(info);
      case 1: {
        const n = this.argument(info);
        return typeof n === "bigint" ? -1n - n : n <= Number.MAX_SAFE_INTEGER - 1 ? -1 - n : -1n - BigInt(n);
      }
      case 2:
      case 3: {
        const n = this.length(info);
        const bytes = d.subarray(this.pos, this.pos + n);
        this.pos += n;
        if (major === 2) return bytes.slice();
        const text = utf8Decode(bytes);
        if (text === null) this.fail("error decoding text string");
        return text;
      }
      case 4: {
        if (depth >= MAX_DEPTH) this.fail(`maximum container nesting depth (${MAX_DEPTH}) exceeded`);
        const n = this.length(info);
        const out: CborValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.item(depth + 1));
        return out;
      }
      case 5: {
        if (depth >= MAX_DEPTH) this.fail(`maximum container nesting depth (${MAX_DEPTH}) exceeded`);
        const n = this.length(info);
        const entries: Array<readonly [CborValue, CborValue]> = [];
        let previous: Uint8Array | null = null;
        for (let i = 0; i < n; i++) {
          const start = this.pos;
          const key = this.item(depth + 1);
          const encoded = d.subarray(start, this.pos);
          if (previous !== null) {
            const order = compareBytes(previous, encoded);
            if (order === 0) this.fail("error decoding map: duplicate map key");
            if (order > 0) this.fail("map keys not in deterministic order (RFC 8949 section 4.2.1)");
          }
          previous = encoded;
          entries.push([key, this.item(depth + 1)]);
        }
        return new CborMap(entries);
      }
      case 6: {
        const tag = this.argument(info);
        this.fail(`CBOR tag ${tag} is not allowed inside a COSE_Sign1`);
      }
      // falls through (never reached: fail throws)
      default: {
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        if (info === 23) return undefined;
        if (info < 20) return new CborSimple(info);
        if (info === 24) {
          if (this.pos >= d.length) this.fail("premature end of data");
          const v = d[this.pos++]!;
          if (v < 32) this.fail("error decoding special value: invalid two-byte sequence for simple value");
          return new CborSimple(v);
        }
        if (info >= 25 && info <= 27) {
          throw new DecodeError(FORMAT, `${this.what} holds a float, which our profile does not allow`);
        }
        this.fail(info === 31 ? "indefinite length is not allowed (break)" : `reserved simple value ${info}`);
      }
    }
  }
}

/**
 * Decode exactly one deterministic CBOR item from `data[offset:]`; `what` names it in
 * errors. Raises {@link DecodeError} for anything outside the profile.
 */
export function decodeCbor(data: Uint8Array, what: string, offset = 0): CborValue {
  const reader = new Reader(data, offset, what);
  const item = reader.item(0);
  if (reader.pos !== data.length) {
    throw new DecodeError(FORMAT, `${data.length - reader.pos} trailing byte(s) after ${what}`);
  }
  return item;
}

/** A CBOR-ish name of a decoded value's type, for error reasons. */
export function cborType(value: CborValue): string {
  if (value instanceof CborMap) return "map";
  if (value instanceof Uint8Array) return "bstr";
  if (Array.isArray(value)) return "array";
  if (typeof value === "string") return "tstr";
  if (typeof value === "boolean") return "bool";
  if (value === null) return "nil";
  if (value === undefined) return "undefined";
  if (value instanceof CborSimple) return "simple";
  return "int";
}

// -- encoding (for tests and the wallet side) --------------------------------------------

function head(major: number, n: number | bigint): number[] {
  const m = major << 5;
  const v = BigInt(n);
  if (v < 24n) return [m | Number(v)];
  if (v < 0x100n) return [m | 24, Number(v)];
  if (v < 0x10000n) return [m | 25, Number(v >> 8n), Number(v & 0xffn)];
  if (v < 0x100000000n) return [m | 26, ...[24n, 16n, 8n, 0n].map((s) => Number((v >> s) & 0xffn))];
  return [m | 27, ...[56n, 48n, 40n, 32n, 24n, 16n, 8n, 0n].map((s) => Number((v >> s) & 0xffn))];
}

/** The deterministic encoding of `value` (integers, strings, bytes, arrays, maps). */
export function encodeCbor(value: CborValue): Uint8Array {
  const out: number[] = [];
  const put = (v: CborValue): void => {
    if (typeof v === "number" || typeof v === "bigint") {
      if (typeof v === "number" && !Number.isInteger(v)) throw new TypeError("no floats");
      const big = BigInt(v);
      out.push(...(big >= 0n ? head(0, big) : head(1, -1n - big)));
    } else if (typeof v === "string") {
      const bytes = new TextEncoder().encode(v);
      out.push(...head(3, bytes.length), ...bytes);
    } else if (v instanceof Uint8Array) {
      out.push(...head(2, v.length), ...v);
    } else if (Array.isArray(v)) {
      out.push(...head(4, v.length));
      v.forEach(put);
    } else if (v instanceof CborMap) {
      const encoded = v.entries.map(([k, x]) => [encodeCbor(k), encodeCbor(x)] as const);
      encoded.sort((a, b) => compareBytes(a[0], b[0]));
      out.push(...head(5, encoded.length));
      for (const [k, x] of encoded) out.push(...k, ...x);
    } else if (v === false) out.push(0xf4);
    else if (v === true) out.push(0xf5);
    else if (v === null) out.push(0xf6);
    else if (v === undefined) out.push(0xf7);
    else out.push(...(v.value < 24 ? [0xe0 | v.value] : [0xf8, v.value]));
  };
  put(value);
  return Uint8Array.from(out);
}

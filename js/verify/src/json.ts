/**
 * Strict JSON, as cardsvc.core.jws.strict_json_object: duplicate members, NaN/Infinity
 * and non-object roots refused. Integers stay integers (a `bigint` beyond 2**53) and
 * fractions become {@link JsonFloat}, so `1.0` is not taken for the integer 1, as in Python.
 */
import { utf8Decode } from "./bytes.js";
import { DecodeError } from "./errors.js";

/** A JSON number with a fraction or exponent (Python float). */
export class JsonFloat {
  constructor(readonly value: number) {}
}

export type JsonValue =
  | null
  | boolean
  | number
  | bigint
  | JsonFloat
  | string
  | JsonValue[]
  | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** Whether `v` is a JSON integer (Python int, never bool). */
export function isJsonInt(v: unknown): v is number | bigint {
  return (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);
}

const MAX_DEPTH = 512;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

class Parser {
  pos = 0;
  constructor(
    readonly text: string,
    readonly what: string,
  ) {}

  fail(reason: string): never {
    throw new DecodeError(this.what, `invalid JSON: ${reason} at position ${this.pos}`);
  }

  ws(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.pos++;
      else break;
    }
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.ws();
    const t = this.text;
    const c = t[this.pos];
    if (c === "{") {
      this.pos++;
      const obj: JsonObject = Object.create(null) as JsonObject;
      this.ws();
      if (t[this.pos] === "}") {
        this.pos++;
        return obj;
      }
      for (;;) {
        this.ws();
        if (t[this.pos] !== '"') this.fail("expecting property name enclosed in double quotes");
        const key = this.string();
        this.ws();
        if (t[this.pos] !== ":") this.fail("expecting ':' delimiter");
        this.pos++;
        const v = this.value(depth + 1);
        if (Object.prototype.hasOwnProperty.call(obj, key)) {
          throw new DecodeError(this.what, `duplicate member ${JSON.stringify(key).slice(0, 48)}`);
        }
        obj[key] = v;
        this.ws();
        if (t[this.pos] === ",") this.pos++;
        else if (t[this.pos] === "}") {
          this.pos++;
          return obj;
        } else this.fail("expecting ',' delimiter");
      }
    }
    if (c === "[") {
      this.pos++;
      const arr: JsonValue[] = [];
      this.ws();
      if (t[this.pos] === "]") {
        this.pos++;
        return arr;
      }
      for (;;) {
        arr.push(this.value(depth + 1));
        this.ws();
        if (t[this.pos] === ",") this.pos++;
        else if (t[this.pos] === "]") {
          this.pos++;
          return arr;
        } else this.fail("expecting ',' delimiter");
      }
    }
    if (c === '"') return this.string();
    if (t.startsWith("true", this.pos)) return (this.pos += 4), true;
    if (t.startsWith("false", this.pos)) return (this.pos += 5), false;
    if (t.startsWith("null", this.pos)) return (this.pos += 4), null;
    for (const name of ["NaN", "Infinity", "-Infinity"]) {
      if (t.startsWith(name, this.pos)) throw new DecodeError(this.what, `non-standard JSON constant ${name}`);
    }
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(t);
    if (m === null) this.fail("expecting value");
    this.pos += m[0].length;
    if (m[1] !== undefined || m[2] !== undefined) return new JsonFloat(Number(m[0]));
    const n = Number(m[0]);
    return Number.isSafeInteger(n) ? n : BigInt(m[0]);
  }

  string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail("invalid control character");
      if (c === 0x5c) {
        out += t.slice(start, this.pos);
        const e = t[this.pos + 1];
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e !== undefined && e in simple) {
          out += simple[e];
          this.pos += 2;
        } else if (e === "u") {
          const hex = t.slice(this.pos + 2, this.pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid \\uXXXX escape");
          out += String.fromCharCode(parseInt(hex, 16));
          this.pos += 6;
        } else this.fail("invalid \\escape");
        start = this.pos;
      } else this.pos++;
    }
  }
}

/** Parse JSON text (or UTF-8 bytes) whose root must be an object. */
export function strictJsonObject(data: Uint8Array | string, what: string): JsonObject {
  let text: string | null;
  if (typeof data === "string") text = data;
  else {
    // Python's json.loads takes a UTF-8 BOM on bytes.
    const body = data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf ? data.subarray(3) : data;
    text = utf8Decode(body);
    if (text === null) throw new DecodeError(what, "invalid JSON: not UTF-8");
  }
  const parser = new Parser(text, what);
  const value = parser.value(0);
  parser.ws();
  if (parser.pos !== text.length) parser.fail("extra data");
  if (!isJsonObject(value)) throw new DecodeError(what, "must be a JSON object");
  return value;
}

/**
 * zlib (RFC 1950) inflate with an output limit, written here (~150 lines) rather than
 * taken from a library: the limit must stop a zlib bomb as it expands, the Adler-32 must be
 * checked, and bytes after the end of the stream must be refused, with one behaviour in
 * every runtime. `DecompressionStream` differs there (Node ignores trailing bytes,
 * Chromium refuses them) and is missing in mini-program engines; fflate does not check the
 * Adler-32 nor report where the stream ended. See README "Choices".
 */

export class InflateError extends Error {}
/** The output would exceed the limit; `size` is a lower bound. */
export class InflateLimitError extends Error {
  constructor(readonly size: number) {
    super("output over the limit");
  }
}

const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A canonical Huffman decoding table: a lookup of `bits`-bit codes, (symbol << 4 | length). */
interface Table {
  lookup: Int32Array;
  bits: number;
}

function buildTable(lengths: ArrayLike<number>, n: number): Table {
  let max = 0;
  const count = new Uint16Array(16);
  for (let i = 0; i < n; i++) {
    const l = lengths[i]!;
    count[l]!++;
    if (l > max) max = l;
  }
  count[0] = 0;
  // Over-subscribed code sets are refused; incomplete ones are allowed (RFC 1951 permits a
  // single distance code), their holes decode as invalid.
  let left = 1;
  for (let l = 1; l <= 15; l++) {
    left = (left << 1) - count[l]!;
    if (left < 0) throw new InflateError("over-subscribed code lengths");
  }
  const next = new Uint16Array(16);
  for (let l = 1, code = 0; l <= 15; l++) {
    code = (code + count[l - 1]!) << 1;
    next[l] = code;
  }
  const bits = Math.max(max, 1);
  const lookup = new Int32Array(1 << bits).fill(-1);
  for (let sym = 0; sym < n; sym++) {
    const l = lengths[sym]!;
    if (!l) continue;
    const code = next[l]!++;
    // Codes are read LSB first: reverse them, then fill every entry with this prefix.
    let rev = 0;
    for (let i = 0; i < l; i++) rev |= ((code >> i) & 1) << (l - 1 - i);
    for (let j = rev; j < 1 << bits; j += 1 << l) lookup[j] = (sym << 4) | l;
  }
  return { lookup, bits };
}

let FIXED: [Table, Table] | null = null;
function fixedTables(): [Table, Table] {
  if (FIXED === null) {
    const l = new Uint8Array(288);
    l.fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288);
    FIXED = [buildTable(l, 288), buildTable(new Uint8Array(30).fill(5), 30)];
  }
  return FIXED;
}

/** Inflate a zlib stream; at most `limit` bytes out. Throws {@link InflateError}/{@link InflateLimitError}. */
export function inflateZlib(data: Uint8Array, limit: number): Uint8Array {
  if (data.length < 2) throw new InflateError("truncated zlib header");
  const cmf = data[0]!;
  const flg = data[1]!;
  if ((cmf & 0x0f) !== 8 || cmf >> 4 > 7 || ((cmf << 8) | flg) % 31 !== 0) throw new InflateError("incorrect header check");
  if (flg & 0x20) throw new InflateError("a preset dictionary is not supported");
  let out = new Uint8Array(Math.min(limit + 1, Math.max(1024, data.length * 4)));
  let o = 0;
  let pos = 2;
  let bitBuf = 0;
  let bitCount = 0;
  const need = (n: number): void => {
    while (bitCount < n) {
      if (pos >= data.length) throw new InflateError("truncated zlib stream");
      bitBuf |= data[pos++]! << bitCount;
      bitCount += 8;
    }
  };
  const bits = (n: number): number => {
    if (n === 0) return 0;
    need(n);
    const v = bitBuf & ((1 << n) - 1);
    bitBuf >>>= n;
    bitCount -= n;
    return v;
  };
  const ensure = (extra: number): void => {
    if (o + extra > limit) throw new InflateLimitError(o + extra);
    if (o + extra > out.length) {
      const grown = new Uint8Array(Math.min(limit + 1, Math.max(out.length * 2, o + extra)));
      grown.set(out.subarray(0, o));
      out = grown;
    }
  };
  const decode = (t: Table): number => {
    // Fill up to t.bits bits without failing at the very end of the data.
    while (bitCount < t.bits && pos < data.length) {
      bitBuf |= data[pos++]! << bitCount;
      bitCount += 8;
    }
    const entry = t.lookup[bitBuf & ((1 << t.bits) - 1)]!;
    if (entry < 0) throw new InflateError("invalid Huffman code");
    const l = entry & 15;
    if (l > bitCount) throw new InflateError("truncated zlib stream");
    bitBuf >>>= l;
    bitCount -= l;
    return entry >> 4;
  };
  let final = 0;
  while (!final) {
    final = bits(1);
    const type = bits(2);
    if (type === 0) {
      pos -= bitCount >> 3; // whole bytes read ahead go back; the rest pads to a byte
      bitBuf = 0;
      bitCount = 0;
      if (pos + 4 > data.length) throw new InflateError("truncated zlib stream");
      const len = data[pos]! | (data[pos + 1]! << 8);
      const nlen = data[pos + 2]! | (data[pos + 3]! << 8);
      pos += 4;
      if ((len ^ 0xffff) !== nlen) throw new InflateError("invalid stored block lengths");
      if (pos + len > data.length) throw new InflateError("truncated zlib stream");
      ensure(len);
      out.set(data.subarray(pos, pos + len), o);
      o += len;
      pos += len;
      continue;
    }
    let lit: Table;
    let dist: Table;
    if (type === 1) [lit, dist] = fixedTables();
    else if (type === 2) {
      const hlit = bits(5) + 257;
      const hdist = bits(5) + 1;
      const hclen = bits(4) + 4;
      if (hlit > 286 || hdist > 30) throw new InflateError("too many length or distance symbols");
      const clen = new Uint8Array(19);
      for (let i = 0; i < hclen; i++) clen[CLEN_ORDER[i]!] = bits(3);
      const ct = buildTable(clen, 19);
      const lengths = new Uint8Array(hlit + hdist);
      for (let i = 0; i < hlit + hdist; ) {
        const sym = decode(ct);
        if (sym < 16) lengths[i++] = sym;
        else {
          let repeat: number;
          let value = 0;
          if (sym === 16) {
            if (i === 0) throw new InflateError("repeat with no first length");
            value = lengths[i - 1]!;
            repeat = 3 + bits(2);
          } else if (sym === 17) repeat = 3 + bits(3);
          else repeat = 11 + bits(7);
          if (i + repeat > hlit + hdist) throw new InflateError("too many code lengths");
          lengths.fill(value, i, i + repeat);
          i += repeat;
        }
      }
      if (!lengths[256]) throw new InflateError("no end-of-block code");
      lit = buildTable(lengths.subarray(0, hlit), hlit);
      dist = buildTable(lengths.subarray(hlit), hdist);
    } else throw new InflateError("invalid block type");
    for (;;) {
      const sym = decode(lit);
      if (sym < 256) {
        if (o >= out.length) ensure(1);
        else if (o >= limit) throw new InflateLimitError(o + 1);
        out[o++] = sym;
      } else if (sym === 256) break;
      else {
        const li = sym - 257;
        if (li >= 29) throw new InflateError("invalid length code");
        const len = LENGTH_BASE[li]! + bits(LENGTH_EXTRA[li]!);
        const di = decode(dist);
        if (di >= 30) throw new InflateError("invalid distance code");
        const d = DIST_BASE[di]! + bits(DIST_EXTRA[di]!);
        if (d > o) throw new InflateError("invalid distance too far back");
        ensure(len);
        for (let k = 0; k < len; k++, o++) out[o] = out[o - d]!;
      }
    }
  }
  // Unused bits of the last byte are dropped; the Adler-32 follows, big-endian.
  pos -= bitCount >> 3;
  if (pos + 4 > data.length) throw new InflateError("truncated zlib stream");
  const expected = ((data[pos]! << 24) | (data[pos + 1]! << 16) | (data[pos + 2]! << 8) | data[pos + 3]!) >>> 0;
  pos += 4;
  let a = 1;
  let b = 0;
  for (let i = 0; i < o; ) {
    const end = Math.min(o, i + 5552);
    for (; i < end; i++) {
      a += out[i]!;
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  if ((((b << 16) | a) >>> 0) !== expected) throw new InflateError("incorrect data check");
  if (pos !== data.length) throw new InflateError(`${data.length - pos} bytes follow the end of the zlib stream`);
  return out.subarray(0, o);
}

/**
 * Entry-level patches of a status list (what a delta bundle carries for a shard with few
 * changes), as cardsvc.core.statuspatch: runs of LEB128 varints and the SHA-256 of the
 * list they must produce.
 */
import { b64urlEncode, canonicalB64urlDecode, equalBytes } from "./bytes.js";
import { sha256 } from "./ecdsa.js";
import { DecodeError, StatusPatchError, shown } from "./errors.js";
import { isJsonObject } from "./json.js";
import type { StatusList } from "./statuslist.js";

const FORMAT = "status patch";
const MAX_VARINT_BYTES = 9;

/** `count` consecutive entries from `start` set to `status`. */
export interface Run {
  start: number;
  count: number;
  status: number;
}

function readVarint(data: Uint8Array, pos: number): [number, number] {
  let value = 0;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    if (pos + i >= data.length) throw new DecodeError(FORMAT, `entries end inside a varint at byte ${pos}`);
    const byte = data[pos + i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (!(byte & 0x80)) return [value, pos + i + 1];
  }
  throw new DecodeError(FORMAT, `varint at byte ${pos} is longer than ${MAX_VARINT_BYTES} bytes`);
}

/** Parse `entries` bytes into runs; {@link DecodeError} if malformed. */
export function decodeEntries(data: Uint8Array): Run[] {
  if (!(data instanceof Uint8Array)) throw new DecodeError(FORMAT, "entries must be bytes");
  const runs: Run[] = [];
  let pos = 0;
  let end = 0;
  while (pos < data.length) {
    let gap: number;
    let head: number;
    [gap, pos] = readVarint(data, pos);
    [head, pos] = readVarint(data, pos);
    let count = 1;
    if (head % 2) {
      let extra: number;
      [extra, pos] = readVarint(data, pos);
      count = extra + 2;
    }
    const start = end + gap;
    runs.push({ start, count, status: Math.floor(head / 2) });
    end = start + count;
  }
  return runs;
}

/** A patch object (parsed JSON) as runs and digest; {@link DecodeError}. */
export function parsePatch(obj: unknown): { runs: Run[]; digest: Uint8Array } {
  if (!isJsonObject(obj) || Object.keys(obj).length !== 2 || !("entries" in obj) || !("sha256" in obj)) {
    throw new DecodeError(FORMAT, "a patch must be an object of exactly entries and sha256");
  }
  const entries = obj["entries"];
  const digest = obj["sha256"];
  if (typeof entries !== "string" || typeof digest !== "string") throw new DecodeError(FORMAT, "entries and sha256 must be base64url strings");
  const rawDigest = canonicalB64urlDecode(digest, FORMAT, "sha256");
  if (rawDigest.length !== 32) throw new DecodeError(FORMAT, `sha256 must be 32 bytes, not ${rawDigest.length}`);
  return { runs: decodeEntries(canonicalB64urlDecode(entries, FORMAT, "entries")), digest: rawDigest };
}

/** SHA-256 of a list's uncompressed bytes, base64url (what a patch's `sha256` names). */
export async function listDigest(lst: StatusList): Promise<Uint8Array> {
  return sha256(lst.view());
}

export async function listDigestText(lst: StatusList): Promise<string> {
  return b64urlEncode(await listDigest(lst));
}

/**
 * A copy of `held` with `runs` applied, checked against `digest`. Raises
 * {@link StatusPatchError}: `patch-status`, `patch-index`, `patch-digest`.
 */
export async function applyPatch(held: StatusList, runs: readonly Run[], digest: Uint8Array, uri: string): Promise<StatusList> {
  const size = held.size;
  const top = 2 ** held.bits - 1;
  for (const run of runs) {
    if (run.status > top) {
      throw new StatusPatchError("patch-status", `status ${shown(run.status)} at index ${run.start} does not fit in ${held.bits} bits`, {
        uri,
        index: run.start,
        status: run.status,
      });
    }
    if (run.start + run.count > size) {
      const first = Math.max(run.start, size);
      throw new StatusPatchError("patch-index", `index ${shown(first)} is out of range for a list of ${size} entries`, { uri, index: first });
    }
  }
  const patched = held.withRuns(runs);
  if (!equalBytes(await listDigest(patched), digest)) {
    throw new StatusPatchError(
      "patch-digest",
      "the patched list is not the issuer's (its SHA-256 differs): the held base is not the issuer's version; fetch a full bundle",
      { uri },
    );
  }
  return patched;
}

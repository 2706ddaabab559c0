/**
 * The offline verifier: a pinned root, the newest good verifier bundle, and a verdict per
 * scanned QR text, as cardsvc.core.verifier.OfflineVerifier. Keeps the newest good
 * bundle, checks freshness and clock rollback, and remembers used codes (persisted in a
 * {@link VerifierStore} before `valid` is answered). Times are epoch seconds.
 */
import { fromHex, toHex } from "./bytes.js";
import { type Bundle, verifyBundle } from "./bundle.js";
import { MAX_SKEW_SLOTS, SLOT_SECONDS, deviceReplayKey, deviceValidUntil, verifyDeviceBound, DEVICE_SCHEME_PREFIX } from "./devicebound.js";
import { CoreError, DecodeError, VerificationError } from "./errors.js";
import type { VerifyingKey } from "./keys.js";
import { type Attribute, type AttributeValue, type Purpose, disclosedClaims, purposeName, verifyQrToken } from "./qrtoken.js";
import { Status } from "./statuslist.js";
import { MemoryStore, type VerifierStore } from "./store.js";

export const DEFAULT_MAX_AGE = 24 * 3600;
export const DEFAULT_LEEWAY = 30;
export const DEFAULT_TOKEN_LEEWAY = 5;
export const DEFAULT_SEEN_CAPACITY = 100_000;
export const DEFAULT_MAX_DELTAS = 32;
/** Names of the two values kept in the store (as the Python state files). */
export const STATE_NAME = "bundle-state";
export const REPLAY_NAME = "replay-state";
const MAX_EPOCH = 2 ** 40;

/** The three answers a verifier gives. */
export type Outcome = "valid" | "invalid" | "status-unknown";

/** The answer for one scanned token. */
export interface Verdict {
  outcome: Outcome;
  /** A stable check name (`signature`, `expired`, `replayed`, `revoked`, ...); `null` when valid. */
  reason: string | null;
  detail: string | null;
  purpose: Purpose | null;
  /** The purpose's attributes; empty unless signatures verified and status is not bad. */
  claims: ReadonlyMap<Attribute, AttributeValue>;
  expiresAt: number | null;
  bundleVersion: number | null;
  /** Seconds since the bundle was signed; `null` without a bundle. */
  bundleAge: number | null;
}

/** A JSON view of a verdict, as `cardsvc verify --json`. */
export function verdictToJson(v: Verdict): Record<string, unknown> {
  return {
    verdict: v.outcome,
    reason: v.reason,
    detail: v.detail,
    purpose: v.purpose === null ? null : purposeName(v.purpose),
    claims: disclosedClaims(v.claims),
    exp: v.expiresAt,
    bundle: { version: v.bundleVersion, age_seconds: v.bundleAge === null ? null : Math.trunc(v.bundleAge) },
  };
}

export interface OfflineVerifierOptions {
  store?: VerifierStore;
  maxAge?: number;
  leeway?: number;
  tokenLeeway?: number;
  statusBaseUri?: string;
  seenCapacity?: number;
  skewSlots?: number;
  maxDeltas?: number;
  /** The current time in epoch seconds. */
  clock?: () => number;
}

interface Checked {
  replayKey: string; // hex
  expiresAt: number;
  rememberUntil: number;
  firstAcceptable: number;
  statusShard: number;
  statusIdx: number;
  attributes: ReadonlyMap<Attribute, AttributeValue>;
}

interface ChainEntry {
  token: string;
  accepted_at: number;
}

const NO_CLAIMS: ReadonlyMap<Attribute, AttributeValue> = new Map();
const STATUS_REASONS: Record<number, string> = { [Status.INVALID]: "revoked", [Status.SUSPENDED]: "suspended" };

function shardIndex(bundle: Bundle): Map<number, string> {
  const index = new Map<number, string>();
  const ambiguous = new Set<number>();
  for (const uri of bundle.statusLists.keys()) {
    const last = uri.replace(/\/+$/, "").split("/").pop()!;
    if (!/^[0-9]+$/.test(last)) continue;
    const shard = Number(last);
    if (index.has(shard)) ambiguous.add(shard);
    index.set(shard, uri);
  }
  for (const shard of ambiguous) index.delete(shard);
  return index;
}

function freshUntil(bundle: Bundle, previous: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [uri, shard] of bundle.statusLists) {
    if (bundle.base === null || bundle.sent.has(uri)) out.set(uri, shard.exp);
    else if (bundle.patched.has(uri)) out.set(uri, bundle.expiresAt);
    else out.set(uri, Math.max(shard.exp, previous.get(uri) ?? shard.exp, bundle.expiresAt));
  }
  return out;
}

function human(seconds: number): string {
  const s = Math.trunc(seconds);
  if (Math.abs(s) < 120) return `${s} s`;
  if (Math.abs(s) < 7200) return `${Math.floor(s / 60)} min`;
  if (Math.abs(s) < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function iso(t: number): string {
  return new Date(Math.trunc(t) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function isEpoch(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < MAX_EPOCH;
}

/** Verifies QR tokens offline against a pinned root and the newest good bundle. */
export class OfflineVerifier {
  readonly maxAge: number;
  readonly leeway: number;
  readonly tokenLeeway: number;
  readonly skewSlots: number;
  readonly maxDeltas: number;
  private readonly store: VerifierStore;
  private readonly statusBase: string | null;
  private readonly seenCapacity: number;
  private readonly clock: () => number;
  private current: Bundle | null = null;
  private chain: ChainEntry[] = [];
  private shards = new Map<number, string>();
  private fresh = new Map<string, number>();
  private newestSigned: number | null = null;
  private seen = new Map<string, number>();
  private completeSince: number | null = null;
  private replayProblem: string | null = null;
  private updating: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly root: VerifyingKey,
    opts: OfflineVerifierOptions,
  ) {
    this.store = opts.store ?? new MemoryStore();
    this.maxAge = opts.maxAge ?? DEFAULT_MAX_AGE;
    this.leeway = opts.leeway ?? DEFAULT_LEEWAY;
    this.tokenLeeway = opts.tokenLeeway ?? DEFAULT_TOKEN_LEEWAY;
    this.statusBase = opts.statusBaseUri ? opts.statusBaseUri.replace(/\/+$/, "") : null;
    this.seenCapacity = opts.seenCapacity ?? DEFAULT_SEEN_CAPACITY;
    this.maxDeltas = opts.maxDeltas ?? DEFAULT_MAX_DELTAS;
    this.skewSlots = opts.skewSlots ?? MAX_SKEW_SLOTS;
    this.clock = opts.clock ?? (() => Date.now() / 1000);
    if (this.seenCapacity < 1 || this.maxDeltas < 0) throw new RangeError("seenCapacity must be positive and maxDeltas not negative");
    if (!Number.isInteger(this.skewSlots) || this.skewSlots < 0 || this.skewSlots > MAX_SKEW_SLOTS) {
      throw new RangeError(`skewSlots must be 0..${MAX_SKEW_SLOTS}`);
    }
  }

  /**
   * A verifier with the state kept in `opts.store` (memory by default). The stored chain
   * is re-verified against the pinned root (the store is not trusted, the signatures
   * are); a damaged chain raises, a damaged replay memory never does (it fails closed).
   */
  static async open(root: VerifyingKey, opts: OfflineVerifierOptions = {}): Promise<OfflineVerifier> {
    const verifier = new OfflineVerifier(root, opts);
    const state = await verifier.store.get(STATE_NAME);
    await verifier.load(state);
    await verifier.loadReplay(state !== null);
    return verifier;
  }

  /** The bundle in use (after deltas, merged), `null` before the first update. */
  get bundle(): Bundle | null {
    return this.current;
  }

  /** The version to ask a delta from, `null` when a full bundle is due. */
  get deltaBase(): number | null {
    if (this.current === null || this.chain.length > this.maxDeltas) return null;
    return this.current.version;
  }

  /** Why the replay memory was rebuilt at start (`null` when it loaded whole). */
  get replayMemoryProblem(): string | null {
    return this.replayProblem;
  }

  /** Codes that could have been accepted before this time get `replay-unknown`. */
  get replayMemoryCompleteSince(): number | null {
    return this.completeSince;
  }

  /** The newest issuer-signed time seen; the clock may not go back before it. */
  get newestSignedTime(): number | null {
    return this.newestSigned;
  }

  /** Until when the held bundle vouches for status list `uri` (`null`: not held). */
  freshUntil(uri: string): number | null {
    const shard = this.current?.statusLists.get(uri);
    return shard === undefined ? null : (this.fresh.get(uri) ?? shard.exp);
  }

  /** Seconds since the held bundle was signed; `null` without one. */
  bundleAge(now?: number): number | null {
    return this.current === null ? null : (now ?? this.clock()) - this.current.issuedAt;
  }

  /** `now` (or the clock), refused (`clock-rollback`) if before the newest signed time seen. */
  checkClock(now?: number): number {
    const t = now ?? this.clock();
    if (this.newestSigned !== null && t < this.newestSigned - this.leeway) {
      throw new VerificationError(
        "clock-rollback",
        `clock ${iso(t)} is before the issuer-signed time ${iso(this.newestSigned)} already seen; fix the clock`,
      );
    }
    return t;
  }

  /**
   * Verify a bundle (full, or a delta on the held one) and make it current. Raises the
   * {@link verifyBundle} errors or `clock-rollback`; on any failure the held bundle stays.
   */
  update(token: string, opts: { now?: number } = {}): Promise<Bundle> {
    const run = this.updating.then(async () => {
      const now = this.checkClock(opts.now);
      const bundle = await verifyBundle(token, { root: this.root, now, leeway: this.leeway, previous: this.current });
      const fresh = freshUntil(bundle, this.fresh);
      const entry = { token, accepted_at: Math.trunc(now) };
      const chain = bundle.base === null ? [entry] : [...this.chain, entry];
      const saved = { bundle: this.current, chain: this.chain, fresh: this.fresh, shards: this.shards, newest: this.newestSigned };
      this.install(bundle, chain, fresh);
      try {
        await this.save();
      } catch (e) {
        this.current = saved.bundle;
        this.chain = saved.chain;
        this.fresh = saved.fresh;
        this.shards = saved.shards;
        this.newestSigned = saved.newest;
        throw e;
      }
      return bundle;
    });
    this.updating = run.catch(() => undefined);
    return run;
  }

  private install(bundle: Bundle, chain: ChainEntry[], fresh: Map<string, number>): void {
    this.current = bundle;
    this.chain = chain;
    this.fresh = fresh;
    this.shards = shardIndex(bundle);
    const signed = [bundle.issuedAt, bundle.trustList.issuedAt, ...[...bundle.statusLists.values()].map((t) => t.iat)];
    if (this.newestSigned !== null) signed.push(this.newestSigned);
    this.newestSigned = Math.max(...signed);
  }

  private async load(text: string | null): Promise<void> {
    if (text === null) return;
    let state: unknown;
    try {
      state = JSON.parse(text);
    } catch {
      throw new DecodeError("verifier state", "not JSON");
    }
    if (typeof state !== "object" || state === null || (state as { format?: unknown }).format !== 1) {
      throw new DecodeError("verifier state", "unknown format");
    }
    const s = state as { newest_signed_time?: unknown; chain?: unknown };
    if (isEpoch(s.newest_signed_time)) this.newestSigned = s.newest_signed_time;
    if (!Array.isArray(s.chain)) throw new DecodeError("verifier state", "chain must be a list");
    let bundle: Bundle | null = null;
    let fresh = new Map<string, number>();
    for (const entry of s.chain as unknown[]) {
      const e = entry as Partial<ChainEntry> | null;
      if (typeof e !== "object" || e === null || !Number.isInteger(e.accepted_at) || typeof e.token !== "string") {
        throw new DecodeError("verifier state", "malformed chain entry");
      }
      bundle = await verifyBundle(e.token, { root: this.root, now: e.accepted_at!, leeway: this.leeway, previous: bundle });
      fresh = freshUntil(bundle, fresh);
    }
    if (bundle !== null) this.install(bundle, s.chain as ChainEntry[], fresh);
  }

  private async save(): Promise<void> {
    const state = { format: 1, newest_signed_time: this.newestSigned === null ? null : Math.trunc(this.newestSigned), chain: this.chain };
    if ((await this.store.get(REPLAY_NAME)) === null) await this.saveReplay();
    await this.store.set(STATE_NAME, JSON.stringify(state));
  }

  private async loadReplay(hadState: boolean): Promise<void> {
    const now = this.clock();
    let raw: string | null;
    try {
      raw = await this.store.get(REPLAY_NAME);
    } catch (e) {
      this.loseReplayMemory(now, `cannot read the replay memory: ${String(e)}`);
      return;
    }
    if (raw === null) {
      if (hadState) this.loseReplayMemory(now, "the replay memory is missing beside a kept bundle");
      return;
    }
    try {
      const [seen, since] = this.parseReplay(raw);
      this.seen = seen;
      this.completeSince = since;
    } catch (e) {
      this.loseReplayMemory(now, e instanceof CoreError ? e.detail : String(e));
    }
  }

  private parseReplay(raw: string): [Map<string, number>, number | null] {
    const what = "replay memory";
    if (raw.length > 64 * (this.seenCapacity + 16)) throw new DecodeError(what, "larger than its capacity takes");
    let state: unknown;
    try {
      state = JSON.parse(raw);
    } catch {
      throw new DecodeError(what, "not JSON");
    }
    const s = state as { format?: unknown; complete_since?: unknown; seen?: unknown } | null;
    if (typeof s !== "object" || s === null || s.format !== 1) throw new DecodeError(what, "unknown format");
    if (s.complete_since !== null && s.complete_since !== undefined && !isEpoch(s.complete_since)) {
      throw new DecodeError(what, "complete_since must be epoch seconds or null");
    }
    if (!Array.isArray(s.seen) || s.seen.length > this.seenCapacity) throw new DecodeError(what, "seen must be a bounded list");
    const seen = new Map<string, number>();
    for (const entry of s.seen as unknown[]) {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string") throw new DecodeError(what, "an entry must be [hex key, expiry]");
      const key = fromHex(entry[0]);
      if (key === null || (key.length !== 8 && key.length !== 16) || !isEpoch(entry[1])) {
        throw new DecodeError(what, "an entry's key or expiry is malformed");
      }
      seen.set(toHex(key), entry[1]);
    }
    return [seen, (s.complete_since as number | null | undefined) ?? null];
  }

  private loseReplayMemory(at: number, problem: string): void {
    this.replayProblem = problem;
    this.completeSince = Math.max(at, this.completeSince ?? at);
  }

  private async saveReplay(): Promise<void> {
    const state = {
      format: 1,
      complete_since: this.completeSince === null ? null : Math.ceil(this.completeSince),
      seen: [...this.seen].map(([k, until]) => [k, Math.ceil(until)]),
    };
    await this.store.set(REPLAY_NAME, JSON.stringify(state));
  }

  /**
   * Verify QR text (`SSC1:` or `SSC2:`) for `purpose`; never throws for bad input,
   * answers a {@link Verdict}.
   */
  async verify(text: string, opts: { purpose: Purpose; now?: number }): Promise<Verdict> {
    const bundle = this.current;
    const version = bundle?.version ?? null;
    const purpose = opts.purpose;
    let now: number;
    try {
      now = this.checkClock(opts.now);
    } catch (e) {
      const v = e as VerificationError;
      return verdict("status-unknown", v.check, v.detail.replace(`${v.check}: `, ""), null, NO_CLAIMS, null, version, null);
    }
    if (bundle === null) {
      return verdict("status-unknown", "no-bundle", "no verifier bundle loaded: cannot check signature or status", null, NO_CLAIMS, null, null, null);
    }
    const age = now - bundle.issuedAt;
    let checked: Checked;
    try {
      checked = await this.checkToken(text, bundle, purpose, now);
    } catch (e) {
      if (e instanceof VerificationError) {
        return verdict("invalid", e.check, e.detail.replace(`${e.check}: `, ""), purpose, NO_CLAIMS, null, version, age);
      }
      if (e instanceof CoreError) return verdict("invalid", e.code, e.detail, purpose, NO_CLAIMS, null, version, age);
      throw e;
    }
    const answer = (outcome: Outcome, reason: string | null, detail: string | null): Verdict =>
      verdict(outcome, reason, detail, purpose, outcome === "invalid" ? NO_CLAIMS : checked.attributes, checked.expiresAt, version, age);
    const replayed = (): Verdict => answer("invalid", "replayed", "this token was already presented");
    if ((this.seen.get(checked.replayKey) ?? 0) > now) return replayed();
    if (age > this.maxAge || now > bundle.expiresAt + this.leeway) {
      return answer(
        "status-unknown",
        "stale-bundle",
        `bundle version ${bundle.version} is ${human(age)} old (maximum ${human(this.maxAge)}); update it`,
      );
    }
    const [outcome, reason, detail] = this.status(checked.statusShard, checked.statusIdx, now);
    if (outcome !== "valid") return answer(outcome, reason, detail);
    let claimed: string | null;
    try {
      claimed = await this.claim(checked, now);
    } catch (e) {
      return answer("status-unknown", "replay-state", `cannot keep the replay memory (${String(e)}); fix the store`);
    }
    if (claimed === null) return answer("valid", null, null);
    if (claimed === "replayed") return replayed();
    return answer(
      "status-unknown",
      "replay-unknown",
      `the replay memory vouches only for codes made after ${iso(this.completeSince ?? now)} (it was lost or full); ask for a fresh code`,
    );
  }

  private async checkToken(text: string, bundle: Bundle, purpose: Purpose, now: number): Promise<Checked> {
    if (typeof text === "string" && text.startsWith(DEVICE_SCHEME_PREFIX)) {
      const presented = await verifyDeviceBound(text, { trustList: bundle.trustList, now, leeway: this.tokenLeeway, purpose, skewSlots: this.skewSlots });
      const c = presented.credential;
      const until = deviceValidUntil(presented);
      return {
        replayKey: toHex(deviceReplayKey(presented)),
        expiresAt: until,
        rememberUntil: until + this.tokenLeeway,
        firstAcceptable: (presented.slot - MAX_SKEW_SLOTS) * SLOT_SECONDS,
        statusShard: c.statusShard,
        statusIdx: c.statusIdx,
        attributes: c.attributes,
      };
    }
    const token = await verifyQrToken(text, { trustList: bundle.trustList, now, leeway: this.tokenLeeway, purpose });
    return {
      replayKey: toHex(token.jti),
      expiresAt: token.expiresAt,
      rememberUntil: token.expiresAt + this.tokenLeeway,
      firstAcceptable: token.issuedAt - this.tokenLeeway,
      statusShard: token.statusShard,
      statusIdx: token.statusIdx,
      attributes: token.attributes,
    };
  }

  private status(shardNo: number, idx: number, now: number): [Outcome, string | null, string | null] {
    const uri = this.statusBase !== null ? `${this.statusBase}/${shardNo}` : this.shards.get(shardNo);
    const shard = uri !== undefined ? this.current?.statusLists.get(uri) : undefined;
    if (shard === undefined || uri === undefined) return ["status-unknown", "status-missing", `the bundle holds no status list for shard ${shardNo}`];
    if (now > (this.fresh.get(uri) ?? shard.exp) + this.leeway) return ["status-unknown", "status-stale", `status list ${shard.sub} expired`];
    const lst = shard.statusList;
    if (idx >= lst.size) return ["status-unknown", "status-missing", `index ${idx} is beyond status list ${shard.sub}`];
    const status = lst.get(idx);
    if (status === Status.VALID) return ["valid", null, null];
    const reason = STATUS_REASONS[status] ?? "status";
    return ["invalid", reason, `e-card status is ${reason} (${status})`];
  }

  /** Remember the code, persisted first; `null` if taken, else why not. */
  private async claim(checked: Checked, t: number): Promise<string | null> {
    const key = checked.replayKey;
    const until = checked.rememberUntil;
    const expired = Math.min(t, this.clock());
    const seen = this.seen;
    if ((seen.get(key) ?? 0) > t) return "replayed";
    const since = this.completeSince;
    if (since !== null && checked.firstAcceptable <= since) return "replay-unknown";
    if (!(this.store instanceof MemoryStore) || seen.size >= this.seenCapacity) {
      for (const [k, e] of seen) if (e <= expired) seen.delete(k);
    }
    if (seen.size >= this.seenCapacity) {
      while (seen.size >= this.seenCapacity) seen.delete(seen.keys().next().value!);
      this.completeSince = Math.max(t, this.completeSince ?? t);
    }
    seen.set(key, until);
    try {
      await this.saveReplay();
    } catch (e) {
      seen.delete(key);
      throw e;
    }
    return null;
  }
}

function verdict(
  outcome: Outcome,
  reason: string | null,
  detail: string | null,
  purpose: Purpose | null,
  claims: ReadonlyMap<Attribute, AttributeValue>,
  expiresAt: number | null,
  bundleVersion: number | null,
  bundleAge: number | null,
): Verdict {
  return { outcome, reason, detail, purpose, claims, expiresAt, bundleVersion, bundleAge };
}

/**
 * Runs test/scenario.json through an OfflineVerifier on a given store; returns one answer
 * per step (a verdict's JSON view, or an update's version or failed check), the format
 * tests/js/test_verify.py builds with cardsvc.core for comparison. Imports nothing.
 */
import type * as Api from "../src/index.js";
import type { Vector } from "./runner.js";

export interface Step {
  op: "verify" | "update" | "reopen" | "damage-replay";
  vector?: string;
  purpose?: string;
  at?: number;
}

export async function runScenario(
  api: typeof Api,
  steps: readonly Step[],
  vectors: Record<string, Vector>,
  store: Api.VerifierStore,
): Promise<unknown[]> {
  const rootJwk = vectors["bundle/valid-full"]!.root_jwk;
  const root = await api.VerifyingKey.fromJwk(rootJwk);
  const open = (): Promise<Api.OfflineVerifier> => api.OfflineVerifier.open(root, { store, clock: () => vectors["bundle/valid-full"]!.now });
  let gate = await open();
  const out: unknown[] = [];
  for (const step of steps) {
    if (step.op === "reopen") {
      gate = await open();
      out.push({ reopened: true, version: gate.bundle?.version ?? null, replay_problem: gate.replayMemoryProblem !== null });
      continue;
    }
    if (step.op === "damage-replay") {
      await store.set(api.REPLAY_NAME, "{not json");
      out.push({ damaged: true });
      continue;
    }
    const vector = vectors[step.vector!]!;
    const now = vector.now + (step.at ?? 0);
    if (step.op === "update") {
      try {
        const bundle = await gate.update(vector.input, { now });
        out.push({ version: bundle.version });
      } catch (e) {
        if (!(e instanceof api.CoreError)) throw e;
        out.push({ error: e.name, check: e instanceof api.VerificationError ? e.check : null, held: gate.bundle?.version ?? null });
      }
      continue;
    }
    const verdict = await gate.verify(vector.input, { purpose: api.purposeFromName(step.purpose!)!, now });
    out.push(api.verdictToJson(verdict));
  }
  return out;
}

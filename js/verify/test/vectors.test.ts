/** Every vector of schemas/vectors, in Node, against the built package (dist/index.js). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { referenceTime, runVector, sameJson } from "./runner.js";
import { loadVectors, vectorSetDigest } from "./vectors.js";

const api = (await import(new URL("../../dist/index.js", import.meta.url).href)) as typeof import("../src/index.js");
const vectors = loadVectors();
const reference = referenceTime(vectors);

test("there are vectors of every kind", () => {
  const kinds = new Set(Object.keys(vectors).map((k) => k.split("/")[0]));
  assert.deepEqual([...kinds].sort(), ["bundle", "card-document", "device-bound", "qr-token", "status-list", "trust-list"]);
});

test("the package names the vector set it is held to", () => {
  assert.deepEqual({ ...api.VECTOR_SET }, vectorSetDigest());
});

for (const [name, vector] of Object.entries(vectors)) {
  test(`vector ${name}: ${vector.description}`, async () => {
    const observed = await runVector(api, vector, reference);
    assert.ok(sameJson(observed, vector.expected), `observed ${JSON.stringify(observed)}\nexpected ${JSON.stringify(vector.expected)}`);
  });
}

/** Read schemas/vectors from the repository (never copied into the package). */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { Vector } from "./runner.js";

// build/test/vectors.js -> js/verify -> repository root
export const PACKAGE_DIR = fileURLToPath(new URL("../../", import.meta.url));
export const VECTOR_DIR = process.env["CARDSVC_VECTORS"] ?? join(PACKAGE_DIR, "..", "..", "schemas", "vectors");

export function vectorFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      // vectors/sm2/: the SM2-with-SM3 suite, which this package does not implement (it
      // refuses SM2 keys with a DecodeError); its vector set is the ES256 one.
      if (e.isDirectory()) {
        if (dir === VECTOR_DIR && e.name === "sm2") continue;
        walk(p);
      }
      else if (p.endsWith(".json")) files.push(relative(VECTOR_DIR, p));
    }
  };
  walk(VECTOR_DIR);
  return files.sort();
}

/** Every vector, keyed by its path without `.json` (`qr-token/high-s`). */
export function loadVectors(): Record<string, Vector> {
  const out: Record<string, Vector> = {};
  for (const f of vectorFiles()) out[f.replace(/\.json$/, "")] = JSON.parse(readFileSync(join(VECTOR_DIR, f), "utf8")) as Vector;
  return out;
}

/** The digest package.json names: sha256 over `path NUL content NUL` of the sorted files. */
export function vectorSetDigest(): { files: number; sha256: string } {
  const files = vectorFiles();
  const h = createHash("sha256");
  for (const f of files) {
    h.update(`${f}\0`);
    h.update(readFileSync(join(VECTOR_DIR, f)));
    h.update("\0");
  }
  return { files: files.length, sha256: h.digest("hex") };
}

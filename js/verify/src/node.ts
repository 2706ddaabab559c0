/** Node-only parts: a {@link VerifierStore} in a directory (atomic writes). */
import { mkdir, readFile, rename, writeFile, open } from "node:fs/promises";
import { join } from "node:path";
import type { VerifierStore } from "./store.js";

/** Keeps state as files in `directory` (`<name>.json`), each written atomically. */
export class FileStore implements VerifierStore {
  constructor(readonly directory: string) {}

  async get(name: string): Promise<string | null> {
    try {
      return await readFile(join(this.directory, `${name}.json`), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  async set(name: string, value: string): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    const target = join(this.directory, `${name}.json`);
    const temp = `${target}.${process.pid}.tmp`;
    await writeFile(temp, value, "utf8");
    const handle = await open(temp, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  }
}

/**
 * Where an {@link OfflineVerifier} keeps its state: the accepted bundle chain and the
 * replay memory, as two named text values. Memory here, IndexedDB for browsers; a file
 * store for Node is in `@cardsvc/verify/node`.
 */

/** A small key-value store of text; `set` must be durable when it resolves. */
export interface VerifierStore {
  get(name: string): Promise<string | null>;
  set(name: string, value: string): Promise<void>;
}

/** Keeps state in memory only: forgotten when the page or process ends. */
export class MemoryStore implements VerifierStore {
  private readonly values = new Map<string, string>();
  async get(name: string): Promise<string | null> {
    return this.values.get(name) ?? null;
  }
  async set(name: string, value: string): Promise<void> {
    this.values.set(name, value);
  }
}

/** Keeps state in an IndexedDB database (browsers, WebViews). */
export class IndexedDbStore implements VerifierStore {
  private db: Promise<IDBDatabase> | null = null;
  constructor(
    readonly databaseName = "cardsvc-verify",
    private readonly factory: IDBFactory | undefined = (globalThis as { indexedDB?: IDBFactory }).indexedDB,
  ) {}

  private open(): Promise<IDBDatabase> {
    if (this.db === null) {
      const factory = this.factory;
      if (!factory) return Promise.reject(new Error("IndexedDB is not available here"));
      this.db = new Promise((resolve, reject) => {
        const request = factory.open(this.databaseName, 1);
        request.onupgradeneeded = () => request.result.createObjectStore("state");
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    }
    return this.db;
  }

  async get(name: string): Promise<string | null> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const request = db.transaction("state", "readonly").objectStore("state").get(name);
      request.onsuccess = () => resolve(typeof request.result === "string" ? request.result : null);
      request.onerror = () => reject(request.error);
    });
  }

  async set(name: string, value: string): Promise<void> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("state", "readwrite", { durability: "strict" });
      tx.objectStore("state").put(value, name);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }
}

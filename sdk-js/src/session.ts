/**
 * Session stores: where the SDK keeps the signed-in user's tokens. `'memory'` forgets them when
 * the page or process ends; `'local'` uses `localStorage`; anything with `get`/`set`/`remove`
 * (sync or async) can stand in, e.g. a secure store on mobile or a file in a CLI.
 *
 * @module
 */

/** A pluggable key/value store for the session. Methods may be sync or return promises. */
export interface SessionStore {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** What `createClient(url, {session})` accepts. */
export type SessionOption = 'memory' | 'local' | SessionStore;

/** Keeps the session in a `Map` for the lifetime of the client. */
export function memoryStore(): SessionStore {
  const map = new Map<string, string>();
  return {
    get: (key) => map.get(key) ?? null,
    set: (key, value) => void map.set(key, value),
    remove: (key) => void map.delete(key),
  };
}

/**
 * Keeps the session in `localStorage` (browsers). Falls back to memory where `localStorage` is
 * missing or throws (Node, private modes with storage disabled).
 */
export function localStore(): SessionStore {
  const storage = (globalThis as { localStorage?: Storage }).localStorage;
  if (!storage) return memoryStore();
  const fallback = memoryStore();
  return {
    get(key) {
      try {
        return storage.getItem(key);
      } catch {
        return fallback.get(key);
      }
    },
    set(key, value) {
      try {
        storage.setItem(key, value);
      } catch {
        fallback.set(key, value);
      }
    },
    remove(key) {
      try {
        storage.removeItem(key);
      } catch {
        fallback.remove(key);
      }
    },
  };
}

/** @internal */
export function resolveSessionStore(option: SessionOption | undefined): SessionStore {
  if (option === undefined || option === 'memory') return memoryStore();
  if (option === 'local') return localStore();
  return option;
}

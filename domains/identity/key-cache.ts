// The API keys an API process has recently seen, in front of Postgres: authentication costs a
// map lookup, not a query, per request. Every process subscribes to one Redis channel; a
// revocation (or a disabled account, a rotation) is published there once committed and evicts the
// key everywhere within milliseconds. Entries also expire after API_KEY_CACHE_TTL_SECONDS, which
// bounds how stale a process can be if it missed a message (its subscription was down: it then
// clears the whole cache when it comes back).
import type { KeyGrantRow } from "./queries.js";

export interface CachedGrant {
  grant: KeyGrantRow | undefined;
  /** The HMAC of the key (base64), when it was looked up by key. */
  hash: string | undefined;
  loadedAt: number;
}

export interface KeyCache {
  byHash(hash: string): KeyGrantRow | undefined | null;
  byId(id: string): KeyGrantRow | undefined | null;
  /** Caches a lookup started at `epoch` (see `epoch()`), unless an eviction came since. */
  put(entry: { hash?: string; id?: string; grant: KeyGrantRow | undefined }, epoch: number): void;
  /** A counter that every eviction moves: a lookup that straddles one is not cached. */
  epoch(): number;
  evictKey(id: string): void;
  evictAccount(accountId: string): void;
  clear(): void;
  readonly size: number;
}

/**
 * `byHash` and `byId` answer a grant, `undefined` for "known not to exist" (only cached by hash:
 * a made-up key asked again costs no query), or `null` for "not cached".
 */
export function createKeyCache(opts: { max: number; ttlMs: number; now?: () => number }): KeyCache {
  const now = opts.now ?? Date.now;
  // Map iteration order is insertion order: the first entry is the oldest, evicted at `max`.
  const hashes = new Map<string, CachedGrant>();
  const ids = new Map<string, CachedGrant>();
  let epoch = 0;

  const fresh = (entry: CachedGrant | undefined) =>
    entry !== undefined && now() - entry.loadedAt < opts.ttlMs ? entry : undefined;

  function drop(entry: CachedGrant) {
    if (entry.hash !== undefined) hashes.delete(entry.hash);
    if (entry.grant) ids.delete(entry.grant.id);
  }

  function trim(map: Map<string, CachedGrant>) {
    while (map.size > opts.max) {
      const oldest = map.values().next().value as CachedGrant;
      drop(oldest);
    }
  }

  return {
    byHash(hash) {
      const entry = fresh(hashes.get(hash));
      return entry === undefined ? null : entry.grant;
    },
    byId(id) {
      const entry = fresh(ids.get(id));
      return entry === undefined ? null : entry.grant;
    },
    put({ hash, id, grant }, startedAt) {
      if (opts.max === 0 || startedAt !== epoch) return;
      const previous =
        (hash !== undefined ? hashes.get(hash) : undefined) ?? (grant ? ids.get(grant.id) : undefined);
      const entry: CachedGrant = {
        grant,
        // A lookup by id learns no hash; keep the one an earlier lookup by key learned.
        hash: hash ?? previous?.hash,
        loadedAt: now(),
      };
      if (previous) drop(previous);
      if (entry.hash !== undefined) hashes.set(entry.hash, entry);
      if (grant) ids.set(grant.id, entry);
      else if (id !== undefined) ids.delete(id);
      trim(hashes);
      trim(ids);
    },
    epoch: () => epoch,
    evictKey(id) {
      epoch++;
      const entry = ids.get(id);
      if (entry) drop(entry);
    },
    evictAccount(accountId) {
      epoch++;
      for (const entry of [...ids.values()]) if (entry.grant?.accountId === accountId) drop(entry);
    },
    clear() {
      epoch++;
      hashes.clear();
      ids.clear();
    },
    get size() {
      return hashes.size + ids.size;
    },
  };
}

// The answers of /api/usage/*, cached. In Redis, one key per answer, holding the answer and the
// version it was computed at: every committed batch bumps the version of each client it counted
// (and of "all"), and an answer of an older version is computed again, so a read is never staler
// than the last commit, and an answer stays an hour at most. While Redis is down, reads go to Postgres with an
// in-process LRU in front; while Postgres is down, the last answer computed is served, with its
// age. Every answer says where it came from (the route turns that into Cache-Status and Age).
import type { Redis } from "ioredis";
import { LRUCache } from "lru-cache";
import { isDependencyDown, serviceUnavailable } from "../../lib/errors.js";

/** Where an answer came from. */
export type AnswerSource = "cache" | "database" | "memory" | "stale";

export interface CachedAnswer<T> {
  value: T;
  source: AnswerSource;
  /** Seconds since it was computed, for a stale answer. */
  ageSeconds?: number;
}

/** How long a cached answer lives, unless it was read from a replica (see createReadCache). */
export const CACHE_TTL_SECONDS = 3_600;
/** The last answer of each read, kept for a Postgres outage. */
const LAST_TTL_SECONDS = 86_400;
/** How long an answer computed while Redis is down serves this process. */
const MEMORY_TTL_MS = 5_000;
const MEMORY_MAX = 1_000;

// KEYS: the scope's version, the answer's key → {version, the cached {v, value} or false}: one
// round trip, not two.
const LOOKUP = `
return {redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2])}`;

interface Stamped {
  value: unknown;
  at: number;
}

export type ReadCache = ReturnType<typeof createReadCache>;

/**
 * `ttlSeconds`: how long an answer stays cached. An answer read from a replica may predate the
 * commit that bumped its version (replication lag), so it should be kept briefly.
 */
export function createReadCache(opts: { redis: Redis; keyPrefix: string; ttlSeconds?: number }) {
  const { redis, keyPrefix } = opts;
  const ttlSeconds = opts.ttlSeconds ?? CACHE_TTL_SECONDS;
  const versionKey = (scope: string) => `${keyPrefix}:v:${scope}`;
  const memory = new LRUCache<string, Stamped>({ max: MEMORY_MAX, ttl: MEMORY_TTL_MS });
  // No TTL: what a process last computed, for when neither Redis nor Postgres answers.
  const lastInMemory = new LRUCache<string, Stamped>({ max: MEMORY_MAX });

  const stale = <T>(last: Stamped): CachedAnswer<T> => ({
    value: last.value as T,
    source: "stale",
    ageSeconds: Math.max(0, Math.round((Date.now() - last.at) / 1000)),
  });

  async function fromRedis(
    name: string,
    scope: string,
  ): Promise<{ key: string; version: string; hit?: unknown } | undefined> {
    try {
      const key = `${keyPrefix}:cache:${scope}:${name}`;
      const [version, text] = (await redis.eval(LOOKUP, 2, versionKey(scope), key)) as [
        string,
        string | null,
      ];
      const cached = text === null ? undefined : (JSON.parse(text) as { v: string; value: unknown });
      return cached?.v === version ? { key, version, hit: cached.value } : { key, version };
    } catch (err) {
      if (isDependencyDown(err) || redis.status !== "ready") return undefined;
      throw err;
    }
  }

  return {
    /**
     * The answer `name` (which names its scope's client and anything else it depends on, such as
     * the day), of the client `scope` ("all": every client): cached, or computed by `compute`.
     */
    async read<T>(name: string, scope: string, compute: () => Promise<T>): Promise<CachedAnswer<T>> {
      const memoryKey = `${scope}:${name}`;
      const cached = await fromRedis(name, scope);
      if (cached?.hit !== undefined) return { value: cached.hit as T, source: "cache" };
      if (cached === undefined) {
        // Redis is down: Postgres, with this process's LRU in front.
        const remembered = memory.get(memoryKey);
        if (remembered) return { value: remembered.value as T, source: "memory" };
      }
      let value: T;
      try {
        value = await compute();
      } catch (err) {
        if (!isDependencyDown(err)) throw err;
        // Postgres is down: the last answer, however old, rather than none.
        const last =
          cached === undefined
            ? undefined
            : await redis.get(`${keyPrefix}:last:${memoryKey}`).then(
                (text) => (text === null ? undefined : (JSON.parse(text) as Stamped)),
                () => undefined,
              );
        const fallback = last ?? lastInMemory.get(memoryKey);
        if (fallback) return stale(fallback);
        throw serviceUnavailable("Postgres");
      }
      const stamped: Stamped = { value, at: Date.now() };
      lastInMemory.set(memoryKey, stamped);
      if (cached === undefined) memory.set(memoryKey, stamped);
      else
        await redis
          .pipeline()
          .set(cached.key, JSON.stringify({ v: cached.version, value }), "EX", ttlSeconds)
          .set(`${keyPrefix}:last:${memoryKey}`, JSON.stringify(stamped), "EX", LAST_TTL_SECONDS)
          .exec()
          .catch(() => {});
      return { value, source: "database" };
    },

    /** Makes every cached answer of these scopes stale now (a change other than a commit). */
    async invalidate(scopes: Iterable<string>): Promise<void> {
      const pipeline = redis.pipeline();
      for (const scope of scopes) pipeline.incr(versionKey(scope));
      await pipeline.exec();
    },

    /** The Redis keys whose increment makes every cached answer of these scopes stale. */
    versionKeys: (scopes: Iterable<string>) => [...scopes].map(versionKey),
  };
}

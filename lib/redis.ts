// Redis connections. Producers fail fast (the API answers 503 instead of queueing commands in
// memory while Redis is away); workers wait forever, as BullMQ's blocking commands require.
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "./logger.js";

export type RedisRole = "producer" | "worker";

export function createRedis(url: string, role: RedisRole, logger: Logger, extra: RedisOptions = {}): Redis {
  const options: RedisOptions =
    role === "producer"
      ? {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          // Many concurrent requests each add one job: one round trip carries them all.
          enableAutoPipelining: true,
          connectTimeout: 2_000,
        }
      : { maxRetriesPerRequest: null, enableAutoPipelining: false };
  const redis = new Redis(url, {
    ...options,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
    lazyConnect: false,
    ...extra,
  });
  let lastLogged = 0;
  redis.on("error", (err) => {
    // One line per 5 s at most: a Redis outage must not flood the logs.
    const now = Date.now();
    if (now - lastLogged > 5_000) {
      lastLogged = now;
      logger.error(
        { err: { message: err.message, code: (err as { code?: string }).code }, role },
        "redis error",
      );
    }
  });
  return redis;
}

/**
 * The file store's connection: fails fast like a producer, but without auto-pipelining, which
 * would copy several multi-megabyte chunks into one write; plain commands still pipeline on the
 * socket. Commands issued while it connects wait for it (the worker's first job right after start).
 */
export const createFileStoreRedis = (url: string, logger: Logger): Redis =>
  createRedis(url, "producer", logger, { enableAutoPipelining: false, enableOfflineQueue: true });

/** Resolves when the connection is ready, rejects after `timeoutMs`. */
export async function waitForRedis(redis: Redis, timeoutMs = 5_000): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${timeoutMs} ms (status ${redis.status})`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off("ready", onReady);
    };
    redis.on("ready", onReady);
  });
}

/** The keys matching `pattern`, a SCAN batch at a time (never KEYS: it blocks the server). */
export async function* scanKeys(redis: Redis, pattern: string, count = 1000): AsyncGenerator<string[]> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", count);
    cursor = next;
    if (keys.length > 0) yield keys;
  } while (cursor !== "0");
}

/** Deletes the keys matching `pattern` (never FLUSHALL: other things share this Redis); returns how many. */
export async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  let deleted = 0;
  for await (const keys of scanKeys(redis, pattern)) deleted += await redis.unlink(...keys);
  return deleted;
}

/** Redis's memory as INFO reports it; `maxBytes` 0 means no maxmemory is set. */
export interface RedisMemory {
  usedBytes: number;
  maxBytes: number;
}

export async function redisMemory(redis: Redis): Promise<RedisMemory> {
  const info = await redis.info("memory");
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(info)?.[1] ?? 0);
  return { usedBytes: field("used_memory"), maxBytes: field("maxmemory") };
}

/** At or over its maxmemory: with noeviction (as BullMQ requires) Redis refuses every write. */
export const isRedisFull = ({ usedBytes, maxBytes }: RedisMemory): boolean =>
  maxBytes > 0 && usedBytes >= maxBytes;

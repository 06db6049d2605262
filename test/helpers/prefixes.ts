// The BullMQ key prefixes a test file takes, so that keys left under one fail the file (see
// setup-each-file.ts): nothing flushes the shared Redis, so a leak piles up run after run.
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { loadTestEnv } from "../../lib/config.js";
import { createLogger } from "../../lib/logger.js";
import { createRedis, deleteKeys, scanKeys, waitForRedis } from "../../lib/redis.js";

const taken = new Set<string>();

/** A prefix of the test's own (`test-<hex>`): everything under it must be deleted by the end of the file. */
export function uniquePrefix(): string {
  const prefix = `test-${randomBytes(6).toString("hex")}`;
  taken.add(prefix);
  return prefix;
}

/** Deletes every key under `prefix` in the test Redis, for tests that hold no connection of their own. */
export const deletePrefix = (prefix: string): Promise<number> =>
  withTestRedis((redis) => deleteKeys(redis, `${prefix}:*`));

/** Keys still in the test Redis under a prefix this file took. */
export async function keysLeftBehind(): Promise<string[]> {
  if (taken.size === 0) return [];
  return withTestRedis(async (redis) => {
    const left: string[] = [];
    for (const prefix of taken) for await (const keys of scanKeys(redis, `${prefix}:*`)) left.push(...keys);
    return left;
  });
}

async function withTestRedis<T>(use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = createRedis(loadTestEnv().TEST_REDIS_URL, "producer", createLogger({ level: "silent" }));
  try {
    await waitForRedis(redis);
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

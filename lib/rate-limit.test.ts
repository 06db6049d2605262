import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "./config.js";
import { AppError } from "./errors.js";
import { createLogger } from "./logger.js";
import { createRateLimit } from "./rate-limit.js";
import { createRedis, deleteKeys, waitForRedis } from "./redis.js";

const env = loadTestEnv();
const prefix = `test-rate-limit-${randomBytes(6).toString("hex")}`;
const logger = createLogger({ level: "silent", name: "test" });
// Port 1: nothing listens, every connection is refused.
const NOWHERE_REDIS = "redis://127.0.0.1:1";

const refusalOf = (promise: Promise<unknown>) => promise.then(() => undefined).catch((err: unknown) => err);

describe("createRateLimit", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = new Redis(env.TEST_REDIS_URL);
    await waitForRedis(redis);
  });
  afterAll(async () => {
    await deleteKeys(redis, `${prefix}:*`);
    redis.disconnect();
  });

  const limit = (name: string, whenRedisIsDown: "refuse" | "memory" = "refuse", over = redis) =>
    createRateLimit(over, {
      keyPrefix: `${prefix}:${name}`,
      points: 3,
      windowSeconds: 60,
      message: "too many tries",
      whenRedisIsDown,
    });

  it("lets `points` through per key and window, then refuses with RATE_LIMITED and Retry-After", async () => {
    const tries = limit("plain");
    for (let i = 0; i < 3; i++) await tries.consume("a");
    const refused = await refusalOf(tries.consume("a"));
    expect(refused).toBeInstanceOf(AppError);
    expect(refused).toMatchObject({ code: "RATE_LIMITED", message: "too many tries" });
    const retryAfter = (refused as AppError).retryAfter ?? 0;
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another key has its own window, under the prefix, with an expiry.
    await tries.consume("b");
    expect(await redis.pttl(`${prefix}:plain:b`)).toBeGreaterThan(0);
  });

  it("lets no more than `points` of concurrent callers through; a reward gives a point back", async () => {
    const tries = limit("burst");
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => refusalOf(tries.consume("a"))));
    expect(outcomes.filter((o) => o === undefined)).toHaveLength(3);
    const fresh = limit("reward");
    for (let i = 0; i < 3; i++) {
      await fresh.consume("a");
      await fresh.reward("a");
    }
    for (let i = 0; i < 3; i++) await fresh.consume("a");
    expect(await refusalOf(fresh.consume("a"))).toMatchObject({ code: "RATE_LIMITED" });
  });

  it("answers 503 while Redis is down, or counts in memory when told to", async () => {
    const down = createRedis(NOWHERE_REDIS, "producer", logger);
    try {
      const refused = await refusalOf(limit("down", "refuse", down).consume("a"));
      expect(refused).toMatchObject({ code: "SERVICE_UNAVAILABLE" });
      expect((refused as AppError).retryAfter).toBeGreaterThan(0);
      const local = limit("down", "memory", down);
      for (let i = 0; i < 3; i++) await local.consume("a");
      expect(await refusalOf(local.consume("a"))).toMatchObject({ code: "RATE_LIMITED" });
    } finally {
      down.disconnect();
    }
  });
});

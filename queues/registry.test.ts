// The producer-side registry: one Queue per contract, and the QueueEvents stream that
// Prefer: wait listens on.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createRedis, waitForRedis } from "../lib/redis.js";
import { uniquePrefix } from "../test/helpers/context.js";
import { QUEUE_NAMES } from "./names.js";
import { createQueueRegistry, isQueueName, type QueueRegistry } from "./registry.js";

const redisUrl = loadTestEnv().TEST_REDIS_URL;
const logger = createLogger({ level: "silent" });
const redis = createRedis(redisUrl, "producer", logger);
const writer = createRedis(redisUrl, "producer", logger);
let registry: QueueRegistry;

beforeAll(() => Promise.all([waitForRedis(redis), waitForRedis(writer)]));
afterEach(async () => {
  await Promise.all(QUEUE_NAMES.map((n) => registry.get(n).obliterate({ force: true })));
  await registry.close();
});
afterAll(() => Promise.all([redis.quit(), writer.quit()]));

describe("createQueueRegistry", () => {
  it("serves a queue per known name under its prefix, and nothing else", () => {
    const prefix = uniquePrefix();
    registry = createQueueRegistry({ redis, redisUrl, prefix, logger });
    for (const name of QUEUE_NAMES) {
      expect(isQueueName(name)).toBe(true);
      expect(registry.get(name).name).toBe(name);
      expect(registry.get(name).opts.prefix).toBe(prefix);
    }
    expect(isQueueName("nope")).toBe(false);
    expect(() => registry.get("nope" as (typeof QUEUE_NAMES)[number])).toThrow(/unknown queue/);
  });

  // A finished job whose event lands right after events() has resolved must still be heard:
  // job.waitUntilFinished has already polled the job by then, so a missed event leaves the
  // first Prefer: wait request of a process hanging for its whole wait.
  it("delivers an event written just as the stream opens", async () => {
    const name = QUEUE_NAMES[0];
    registry = createQueueRegistry({ redis, redisUrl, prefix: uniquePrefix(), logger });
    const eventsKey = registry.get(name).keys.events ?? "";
    const events = await registry.events(name);
    const heard = new Promise<unknown>((resolve) =>
      events.on("completed", (args) => {
        if (args.jobId === "job-1") resolve(args);
      }),
    );
    // Written in the same tick as events() resolved, as a worker finishing that job would.
    await writer.xadd(eventsKey, "*", "event", "completed", "jobId", "job-1", "returnvalue", '{"ok":true}');
    const outcome = await Promise.race([
      heard,
      new Promise((resolve) => setTimeout(() => resolve("not heard"), 3_000)),
    ]);
    expect(outcome).toMatchObject({ jobId: "job-1", returnvalue: { ok: true } });
  });

  it("opens one event stream per queue, shared by every waiter", async () => {
    const name = QUEUE_NAMES[0];
    registry = createQueueRegistry({ redis, redisUrl, prefix: uniquePrefix(), logger });
    const [a, b] = await Promise.all([registry.events(name), registry.events(name)]);
    expect(a).toBe(b);
    expect(await registry.events(name)).toBe(a);
  });
});

import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "../../lib/config.js";
import { isDependencyDown } from "../../lib/errors.js";
import { deleteKeys } from "../../lib/redis.js";
import { uniquePrefix } from "../../test/helpers/context.js";
import { type RedisServer, startRedisServer } from "../../test/helpers/redis-server.js";
import { createChunkReader } from "./chunk-reader.js";

const env = loadTestEnv();

describe("chunk reader", () => {
  const prefix = uniquePrefix();
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(env.TEST_REDIS_URL);
  });
  afterAll(async () => {
    await deleteKeys(redis, `${prefix}:*`);
    redis.disconnect();
  });

  it("reads values straight into the buffers given, many at once and in order", async () => {
    const reader = createChunkReader(redis);
    // Sizes around the reader's 256 KiB socket buffer, so replies start and end mid-read.
    const sizes = [1, 1000, 262_143, 262_144, 262_145, 700_001, 3_000_000];
    const values = sizes.map((n) => randomBytes(n));
    await Promise.all(values.map((v, i) => redis.set(`${prefix}:v${i}`, v)));
    const targets = sizes.map((n) => Buffer.alloc(n));
    const lengths = await Promise.all(targets.map((t, i) => reader.read(`${prefix}:v${i}`, t)));
    expect(lengths).toEqual(sizes);
    expect(targets.map((t, i) => t.equals(values[i] as Buffer))).toEqual(sizes.map(() => true));
    reader.close();
  });

  it("says 0 for a missing key and the stored length for a wrong-sized one, and touches no target then", async () => {
    const reader = createChunkReader(redis);
    const stored = randomBytes(5000);
    await redis.set(`${prefix}:sized`, stored);
    const untouched = () => Buffer.alloc(4999, 0xab);
    const short = untouched();
    const missing = untouched();
    const after = Buffer.alloc(5000);
    // The skipped reply must not throw the replies after it out of step.
    const [a, b, c] = await Promise.all([
      reader.read(`${prefix}:sized`, short),
      reader.read(`${prefix}:no-such-key`, missing),
      reader.read(`${prefix}:sized`, after),
    ]);
    expect([a, b, c]).toEqual([5000, 0, 5000]);
    expect(short.equals(untouched())).toBe(true);
    expect(missing.equals(untouched())).toBe(true);
    expect(after.equals(stored)).toBe(true);
    reader.close();
  });

  it("rejects a command the server refuses and goes on with the next", async () => {
    const reader = createChunkReader(redis);
    await redis.hset(`${prefix}:hash`, "f", "v");
    await redis.set(`${prefix}:ok`, "fine");
    const wrong = reader.read(`${prefix}:hash`, Buffer.alloc(1));
    const next = reader.read(`${prefix}:ok`, Buffer.alloc(4));
    await expect(wrong).rejects.toThrow(/WRONGTYPE/);
    expect(await next).toBe(4);
    reader.close();
  });

  it("reads on, as ioredis does, when given a password the server does not ask for", async () => {
    const withPassword = new Redis(env.TEST_REDIS_URL.replace("redis://", "redis://:unneeded@"), {
      lazyConnect: true,
    });
    await redis.set(`${prefix}:plain`, "xyz");
    const target = Buffer.alloc(3);
    expect(await createChunkReader(withPassword).read(`${prefix}:plain`, target)).toBe(3);
    expect(target.toString()).toBe("xyz");
  });

  it("applies the client's key prefix", async () => {
    const prefixed = new Redis(env.TEST_REDIS_URL, { keyPrefix: `${prefix}:p:` });
    const reader = createChunkReader(prefixed);
    await redis.set(`${prefix}:p:k`, "abc");
    const target = Buffer.alloc(3);
    expect(await reader.read("k", target)).toBe(3);
    expect(target.toString()).toBe("abc");
    prefixed.disconnect();
  });
});

describe("chunk reader on a server of its own", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedisServer(["--save", "", "--requirepass", "s3cret"]);
  });
  afterAll(async () => {
    await server.remove();
  });

  it("authenticates and selects the client's database", async () => {
    const redis = new Redis(`redis://:s3cret@127.0.0.1:${server.port}/3`);
    await redis.set("k", "in db 3");
    const target = Buffer.alloc(7);
    const reader = createChunkReader(redis);
    expect(await reader.read("k", target)).toBe(7);
    expect(target.toString()).toBe("in db 3");
    redis.disconnect();
  });

  it("fails every read with the server's reason when the password is wrong", async () => {
    const redis = new Redis(`redis://:wrong@127.0.0.1:${server.port}`, { lazyConnect: true });
    const reader = createChunkReader(redis);
    await expect(reader.read("k", Buffer.alloc(1))).rejects.toThrow(/WRONGPASS|invalid password/i);
    reader.close();
  });

  it("fails a read the server leaves unanswered (stopped, its sockets open) as an outage", async () => {
    const redis = new Redis(`redis://:s3cret@127.0.0.1:${server.port}`, { lazyConnect: true });
    const reader = createChunkReader(redis, { stallMs: 300 });
    expect(await reader.read("nothing", Buffer.alloc(1))).toBe(0);
    server.signal("SIGSTOP");
    try {
      const stalled = await reader.read("nothing", Buffer.alloc(1)).catch((err: unknown) => err);
      expect((stalled as Error).message).toMatch(/no reply for 300 ms/);
      expect(isDependencyDown(stalled)).toBe(true);
    } finally {
      server.signal("SIGCONT");
    }
    expect(await reader.read("nothing", Buffer.alloc(1))).toBe(0);
    reader.close();
  });

  it("fails reads as an outage while the server is down, and reads again once it is back", async () => {
    const redis = new Redis(`redis://:s3cret@127.0.0.1:${server.port}`, {
      lazyConnect: true,
      connectTimeout: 1000,
    });
    const reader = createChunkReader(redis);
    const admin = new Redis(`redis://:s3cret@127.0.0.1:${server.port}`);
    await admin.set("k", "v");
    admin.disconnect();
    expect(await reader.read("k", Buffer.alloc(1))).toBe(1);
    await server.stop();
    const down = await reader.read("k", Buffer.alloc(1)).catch((err: unknown) => err);
    expect(isDependencyDown(down)).toBe(true);
    await server.start();
    // No AOF here: the restarted server is empty.
    expect(await reader.read("k", Buffer.alloc(1))).toBe(0);
    reader.close();
  });
});

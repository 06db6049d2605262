import { randomUUID } from "node:crypto";
import { Job } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, type MockInstance, vi } from "vitest";
import { apiConfigSchema } from "../domains/config.js";
import { generateApiKey } from "../domains/identity/api-keys.js";
import { ANONYMOUS_TENANT } from "../domains/identity/caller.js";
import { buildAppDeps } from "../http/server.js";
import { loadTestEnv, parseConfig } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { redisMemory, waitForRedis } from "../lib/redis.js";
import { createShutdownRegistry } from "../lib/shutdown.js";
import {
  captureLogs,
  createTestContext,
  eventually,
  TEST_IDENTITY_ENV,
  type TestContext,
  uniquePrefix,
} from "../test/helpers/context.js";
import { freePort } from "../test/helpers/processes.js";
import { type RedisServer, startRedisServer } from "../test/helpers/redis-server.js";
import { createApp } from "./app.js";
import {
  IDEMPOTENCY_TTL_SECONDS,
  idempotencySlot,
  type JobView,
  MAX_WAIT_SECONDS,
} from "./job-submission.js";

type ErrorJson = { error: { code: string; message: string; requestId: string } };
type Accepted = { job: { queue: string; id: string; statusUrl: string } };
type JobJson = JobView;

const event = (alertId: string = randomUUID()) => ({
  type: "ALERT_CREATED",
  alert: { alertId, name: "Disk full", status: "TRIGGERED", triggeredOn: "2026-11-21T11:00:00.000Z" },
});

const submit = (ctx: TestContext, body: unknown, headers: Record<string, string> = {}) =>
  ctx.app.request("/v1/alerts/events", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

/** Every job in the context's alert-ingestion queue, whatever its state. */
const jobCount = async (ctx: TestContext) =>
  Object.values(await ctx.deps.queues.get("alert-ingestion").getJobCounts()).reduce((a, b) => a + b, 0);

/** Runs `request` while `spy` watches (it changes nothing), then removes it: the answer, and the calls seen. */
async function watched<A extends unknown[], R>(
  spy: MockInstance<(...args: A) => R>,
  request: () => Response | Promise<Response>,
): Promise<{ res: Response; calls: A[] }> {
  try {
    const res = await request();
    return { res, calls: [...spy.mock.calls] };
  } finally {
    spy.mockRestore();
  }
}

let t: TestContext; // workers running
let idle: TestContext; // no workers: jobs stay waiting
beforeAll(async () => {
  [t, idle] = await Promise.all([createTestContext(), createTestContext()]);
  t.startWorkers();
});
afterAll(() => Promise.all([t.close(), idle.close()]));

describe("Idempotency-Key", () => {
  it("answers the same job for the same key, and enqueues it once", async () => {
    const before = await jobCount(idle);
    const key = `order-${randomUUID()}`;
    const body = event();
    const first = await submit(idle, body, { "Idempotency-Key": key });
    const second = await submit(idle, body, { "Idempotency-Key": key });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    const [a, b] = (await Promise.all([first.json(), second.json()])) as [Accepted, Accepted];
    expect(b.job.id).toBe(a.job.id);
    expect(second.headers.get("location")).toBe(first.headers.get("location"));
    expect(await jobCount(idle)).toBe(before + 1);
  });

  it("enqueues a job per distinct key", async () => {
    const before = await jobCount(idle);
    const [a, b] = await Promise.all(
      [randomUUID(), randomUUID()].map(async (key) => {
        const res = await submit(idle, event(), { "Idempotency-Key": key });
        expect(res.status).toBe(202);
        return ((await res.json()) as Accepted).job.id;
      }),
    );
    expect(a).not.toBe(b);
    expect(await jobCount(idle)).toBe(before + 2);
  });

  it("makes one job of ten concurrent submissions with one key", async () => {
    const before = await jobCount(idle);
    const key = randomUUID();
    const body = event();
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => submit(idle, body, { "Idempotency-Key": key })),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(202));
    const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as Accepted).job.id));
    expect(new Set(ids).size).toBe(1);
    expect(responses.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(9);
    expect(await jobCount(idle)).toBe(before + 1);
  });

  it.each([
    ["longer than 255 characters", "k".repeat(300)],
    ["with a space", "my key"],
    ["with a control character", "key\u0001"],
    ["with a non-ASCII character", "cl\u00e9"],
    ["empty", ""],
  ])("rejects a key %s with 400 and the error body, enqueuing nothing", async (_label, key) => {
    const before = await jobCount(idle);
    const res = await submit(idle, event(), { "Idempotency-Key": key });
    expect(res.status).toBe(400);
    const body = (await res.json()) as ErrorJson;
    expect(body.error).toMatchObject({
      code: "BAD_REQUEST",
      message: expect.stringMatching(/Idempotency-Key/),
    });
    expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
    expect(await jobCount(idle)).toBe(before);
  });
});

describe("Idempotency-Key reused with another request", () => {
  const storeSecret = (
    ctx: TestContext,
    body: Record<string, unknown>,
    headers: Record<string, string> = {},
  ) =>
    ctx.app.request("/v1/secrets", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  const secretSlotOf = (ctx: TestContext, key: string) =>
    idempotencySlot(ctx.deps.queues.prefix, "encryption", ANONYMOUS_TENANT, key);

  it("answers 422 IDEMPOTENCY_KEY_REUSED and enqueues nothing", async () => {
    const key = randomUUID();
    expect((await submit(idle, event(), { "Idempotency-Key": key })).status).toBe(202);
    const before = await jobCount(idle);
    const res = await submit(idle, event(), { "Idempotency-Key": key });
    expect(res.status).toBe(422);
    expect(res.headers.get("idempotent-replayed")).toBeNull();
    expect(res.headers.get("location")).toBeNull();
    const body = (await res.json()) as ErrorJson;
    expect(body.error).toMatchObject({
      code: "IDEMPOTENCY_KEY_REUSED",
      message: expect.stringMatching(/Idempotency-Key.*different request/),
    });
    expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
    expect(await jobCount(idle)).toBe(before);
  });

  it("counts a body with its keys in another order as the same request", async () => {
    const key = randomUUID();
    const { type, alert } = event();
    const first = await submit(idle, { type, alert }, { "Idempotency-Key": key });
    const reordered = await submit(
      idle,
      { alert: Object.fromEntries(Object.entries(alert).reverse()), type },
      { "Idempotency-Key": key },
    );
    expect(reordered.status).toBe(202);
    expect(reordered.headers.get("idempotent-replayed")).toBe("true");
    expect(((await reordered.json()) as Accepted).job.id).toBe(((await first.json()) as Accepted).job.id);
  });

  it("never acknowledges a store of another secret, and replays the first store's answer", async () => {
    const key = randomUUID();
    const idA = `clientA-${randomUUID()}`;
    const storeA = { id: idA, encryption_key: "key of A", value: "value of A" };
    const wait = { "Idempotency-Key": key, Prefer: "wait=10" };
    const first = await storeSecret(t, storeA, wait);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ id: idA, stored: true });

    const other = await storeSecret(
      t,
      { id: `clientB-${randomUUID()}`, encryption_key: "k", value: "v" },
      wait,
    );
    expect(other.status).toBe(422);
    expect(((await other.json()) as ErrorJson).error.code).toBe("IDEMPOTENCY_KEY_REUSED");

    const replay = await storeSecret(t, storeA, wait);
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.json()).toEqual({ id: idA, stored: true });
    // The slot keeps a keyed hash of the request, never the secret's key or value.
    const slot = (await t.deps.redis.get(secretSlotOf(t, key))) ?? "";
    expect(slot).not.toMatch(/value of A|key of A/);
  });

  it("answers a waited replay of a claim from before fingerprints with the first job's result", async () => {
    const idA = `clientA-${randomUUID()}`;
    const first = await storeSecret(t, { id: idA, encryption_key: "k", value: 1 }, { Prefer: "wait=10" });
    expect(first.status).toBe(200);
    const firstJobId = decodeURIComponent(first.headers.get("content-location")?.split("/").pop() ?? "");
    // A claim the previous release wrote: the job id alone, no fingerprint to compare.
    const key = randomUUID();
    await t.deps.redis.set(secretSlotOf(t, key), firstJobId, "EX", IDEMPOTENCY_TTL_SECONDS);
    const replay = await storeSecret(
      t,
      { id: `clientB-${randomUUID()}`, encryption_key: "k", value: 2 },
      { "Idempotency-Key": key, Prefer: "wait=10" },
    );
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.json()).toEqual({ id: idA, stored: true });
  });
});

describe("Idempotency-Key races", () => {
  const slotOf = (ctx: TestContext, key: string) =>
    idempotencySlot(ctx.deps.queues.prefix, "alert-ingestion", ANONYMOUS_TENANT, key);
  const queueOf = (ctx: TestContext) => ctx.deps.queues.get("alert-ingestion");
  /** The API's lookups of jobs in the context's queue, watched (not changed). */
  const lookups = (ctx: TestContext) => vi.spyOn(queueOf(ctx), "getJob");

  it("answers 409 with Retry-After when the first request's job does not exist (yet)", async () => {
    const before = await jobCount(idle);
    const key = randomUUID();
    // A first request that claimed the key a moment ago and has not enqueued its job.
    await idle.deps.redis.set(slotOf(idle, key), "claimed-but-never-enqueued", "EX", IDEMPOTENCY_TTL_SECONDS);
    const { res, calls } = await watched(lookups(idle), () =>
      submit(idle, event(), { "Idempotency-Key": key }),
    );
    expect(res.status).toBe(409);
    expect(res.headers.get("retry-after")).toBe("1");
    // It gave the first request time to enqueue: it looked for the job again and again before answering.
    expect(calls.filter(([id]) => id === "claimed-but-never-enqueued").length).toBeGreaterThan(1);
    const body = (await res.json()) as ErrorJson;
    expect(body.error).toMatchObject({ code: "CONFLICT", message: expect.stringMatching(/Idempotency-Key/) });
    expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
    expect(res.headers.get("location")).toBeNull();
    expect(await jobCount(idle)).toBe(before);
    expect(await idle.deps.redis.get(slotOf(idle, key))).toBe("claimed-but-never-enqueued");
  });

  it("answers the replay once the first request's job appears", async () => {
    const key = randomUUID();
    const id = `late-${randomUUID()}`;
    await idle.deps.redis.set(slotOf(idle, key), id, "EX", IDEMPOTENCY_TTL_SECONDS);
    let answered = false;
    const pending = Promise.resolve(submit(idle, event(), { "Idempotency-Key": key })).finally(() => {
      answered = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    // Not answered before the job existed: still waiting for it when it appears.
    expect(answered).toBe(false);
    await queueOf(idle).add("alerts.ingest", event(), { jobId: id });
    const res = await pending;
    expect(res.status).toBe(202);
    expect(res.headers.get("idempotent-replayed")).toBe("true");
    expect(((await res.json()) as Accepted).job.id).toBe(id);
  });

  it("still replays a job acknowledged long ago and since trimmed from the queue", async () => {
    const before = await jobCount(idle);
    const key = randomUUID();
    // Claimed an hour ago: its job was enqueued and has been removed (removeOnComplete) since.
    await idle.deps.redis.set(slotOf(idle, key), "trimmed-job", "EX", IDEMPOTENCY_TTL_SECONDS - 3600);
    const { res, calls } = await watched(lookups(idle), () =>
      submit(idle, event(), { "Idempotency-Key": key }),
    );
    expect(res.status).toBe(202);
    // At once: one look for the job, no waiting for it to appear.
    expect(calls.filter(([id]) => id === "trimmed-job")).toHaveLength(1);
    expect(res.headers.get("idempotent-replayed")).toBe("true");
    expect(((await res.json()) as Accepted).job.id).toBe("trimmed-job");
    expect(await jobCount(idle)).toBe(before);
  });

  it("never acknowledges a replay of a job whose enqueue then fails", async () => {
    const key = randomUUID();
    const queue = queueOf(idle);
    const add = queue.add.bind(queue);
    let calls = 0;
    const spy = vi.spyOn(queue, "add").mockImplementation(async (...args) => {
      // The first request's enqueue: slow, then failing. Later ones go through.
      if (calls++ === 0) {
        await new Promise((r) => setTimeout(r, 300));
        throw new Error("enqueue failed");
      }
      return add(...args);
    });
    try {
      const body = event();
      const first = submit(idle, body, { "Idempotency-Key": key });
      await eventually(async () => ((await idle.deps.redis.get(slotOf(idle, key))) ? true : undefined));
      const second = await submit(idle, body, { "Idempotency-Key": key });
      expect((await first).status).toBe(500);
      // The second request took the key over once the first let it go, and enqueued its own job.
      expect(second.status).toBe(202);
      const { job } = (await second.json()) as Accepted;
      expect(await queue.getJob(job.id)).toBeDefined();
      expect(JSON.parse((await idle.deps.redis.get(slotOf(idle, key))) ?? "{}")).toMatchObject({
        job: job.id,
      });
    } finally {
      spy.mockRestore();
    }
  });

  it("releases the key on a failed enqueue only while it still holds that request's job id", async () => {
    const key = randomUUID();
    const slot = slotOf(idle, key);
    const queue = queueOf(idle);
    const spy = vi.spyOn(queue, "add").mockImplementationOnce(async () => {
      // Meanwhile the claim expired and another request claimed the key.
      await idle.deps.redis.set(slot, "another-request", "EX", IDEMPOTENCY_TTL_SECONDS);
      throw new Error("enqueue failed");
    });
    try {
      expect((await submit(idle, event(), { "Idempotency-Key": key })).status).toBe(500);
      expect(await idle.deps.redis.get(slot)).toBe("another-request");
    } finally {
      spy.mockRestore();
    }
    // A failed enqueue that still owns its claim lets it go, so a retry can enqueue.
    const key2 = randomUUID();
    const body = event();
    vi.spyOn(queue, "add").mockRejectedValueOnce(new Error("enqueue failed"));
    expect((await submit(idle, body, { "Idempotency-Key": key2 })).status).toBe(500);
    expect(await idle.deps.redis.get(slotOf(idle, key2))).toBeNull();
    expect((await submit(idle, body, { "Idempotency-Key": key2 })).status).toBe(202);
  });
});

describe("Prefer: wait", () => {
  it("answers 200 with the finished job when it finishes in time", async () => {
    const alertId = randomUUID();
    const res = await submit(t, event(alertId), { Prefer: "wait=10" });
    expect(res.status).toBe(200);
    expect(res.headers.get("preference-applied")).toBe("wait=10");
    const body = (await res.json()) as JobJson;
    expect(body).toMatchObject({ queue: "alert-ingestion", state: "completed", result: { alertId } });
    expect(res.headers.get("content-location")).toBe(`/v1/jobs/alert-ingestion/${body.id}`);
    // Completed means written: the alert is there.
    const ops = await t.account("ops");
    expect((await t.app.request(`/v1/alerts/${alertId}`, { headers: ops.headers })).status).toBe(200);
  });

  it(`caps the wait at ${MAX_WAIT_SECONDS} seconds`, async () => {
    const res = await submit(t, event(), { Prefer: "respond-async, wait=600" });
    expect(res.status).toBe(200);
    expect(res.headers.get("preference-applied")).toBe(`wait=${MAX_WAIT_SECONDS}`);
  });

  it("answers 202 with Location once the wait is over and the job is not", async () => {
    const waits = vi.spyOn(Job.prototype, "waitUntilFinished");
    const { res, calls } = await watched(waits, () => submit(idle, event(), { Prefer: "wait=1" }));
    // It waited on the job for the second asked, then answered 202, not 200.
    expect(calls.map(([, ttl]) => ttl)).toEqual([1_000]);
    expect(res.status).toBe(202);
    expect(res.headers.get("preference-applied")).toBeNull();
    const body = (await res.json()) as Accepted;
    expect(res.headers.get("location")).toBe(body.job.statusUrl);
    const status = (await (await idle.app.request(body.job.statusUrl)).json()) as JobJson;
    expect(status.state).toBe("waiting");
  });

  it("answers the first waited request of a fresh app as soon as the job is done", async () => {
    const fresh = await createTestContext();
    try {
      fresh.startWorkers();
      const alertId = randomUUID();
      const res = await submit(fresh, event(alertId), { Prefer: "wait=5" });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ state: "completed", result: { alertId } });
    } finally {
      await fresh.close();
    }
  });
});

describe("GET /v1/jobs/{queue}/{id}", () => {
  it("shows a finished job: state, attempts, result and timestamps", async () => {
    const alertId = randomUUID();
    // With an Idempotency-Key the event gets a job of its own (plain events may share one).
    const accepted = (await (
      await submit(t, event(alertId), { "Idempotency-Key": randomUUID() })
    ).json()) as Accepted;
    const job = await eventually(async () => {
      const res = await t.app.request(accepted.job.statusUrl);
      expect(res.status).toBe(200);
      const body = (await res.json()) as JobJson;
      return body.state === "completed" ? body : undefined;
    });
    expect(Object.keys(job).sort()).toEqual(
      [
        "id",
        "queue",
        "name",
        "state",
        "progress",
        "attempts",
        "result",
        "failedReason",
        "createdAt",
        "processedAt",
        "finishedAt",
      ].sort(),
    );
    expect(job).toMatchObject({
      id: accepted.job.id,
      queue: "alert-ingestion",
      name: "alerts.ingest",
      attempts: 1,
      result: { alertId },
      failedReason: null,
    });
    const [created, processed, finished] = [job.createdAt, job.processedAt, job.finishedAt].map((s) =>
      Date.parse(s ?? ""),
    ) as [number, number, number];
    expect(new Date(created).toISOString()).toBe(job.createdAt);
    expect(created).toBeLessThanOrEqual(processed);
    expect(processed).toBeLessThanOrEqual(finished);
  });

  it("never shows a job as finished without its result and finishedAt, however it is polled", async () => {
    // Polled as fast as a client can: each poll may land while the job is being completed.
    for (let i = 0; i < 20; i++) {
      const accepted = (await (await submit(t, event())).json()) as Accepted;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const view = (await (await t.app.request(accepted.job.statusUrl)).json()) as JobJson;
        if (view.state === "completed") {
          expect(view).toMatchObject({
            result: { events: 1 },
            finishedAt: expect.any(String),
          });
          break;
        }
        if (Date.now() > deadline) throw new Error(`job still ${view.state} after 10 s`);
      }
    }
  });

  it("shows a job that has not run yet as waiting, with no result and no run timestamps", async () => {
    const accepted = (await (await submit(idle, event())).json()) as Accepted;
    const res = await idle.app.request(accepted.job.statusUrl);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      state: "waiting",
      attempts: 0,
      result: null,
      failedReason: null,
      createdAt: expect.any(String),
      processedAt: null,
      finishedAt: null,
    });
  });

  it.each([
    ["an unknown job", "/v1/jobs/alert-ingestion/no-such-job"],
    ["an unknown queue", "/v1/jobs/no-such-queue/abc"],
  ])("answers 404 with the error body for %s", async (_label, path) => {
    const res = await t.app.request(path);
    expect(res.status).toBe(404);
    const body = (await res.json()) as ErrorJson;
    expect(body.error.code).toBe("NOT_FOUND");
    expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
  });
});

describe("per tenant", () => {
  it("keeps Idempotency-Keys apart: the same key and request from two accounts make two jobs", async () => {
    const [a, b] = [await idle.account("client"), await idle.account("client")];
    const key = `shared-${randomUUID()}`;
    const body = event();
    const jobOf = async (headers: Record<string, string>) => {
      const res = await submit(idle, body, { "Idempotency-Key": key, ...headers });
      expect(res.status).toBe(202);
      return ((await res.json()) as Accepted).job.id;
    };
    const ofA = await jobOf(a.headers);
    const ofB = await jobOf(b.headers);
    const anonymous = await jobOf({});
    expect(new Set([ofA, ofB, anonymous]).size).toBe(3);
    // Each still replays its own.
    expect(await jobOf(a.headers)).toBe(ofA);
    expect(await jobOf(b.headers)).toBe(ofB);
    expect(await jobOf({})).toBe(anonymous);
  });

  it("shows a job to the account that submitted it and to operators; to anyone else it does not exist", async () => {
    const [owner, other, quant, ops, admin] = await Promise.all([
      idle.account("client"),
      idle.account("client"),
      idle.account("quant"),
      idle.account("ops"),
      idle.account("admin"),
    ]);
    const res = await submit(idle, event(), owner.headers);
    const { statusUrl } = ((await res.json()) as Accepted).job;
    for (const headers of [owner.headers, ops.headers, admin.headers])
      expect((await idle.app.request(statusUrl, { headers })).status).toBe(200);
    const anonymousJob = ((await (await submit(idle, event())).json()) as Accepted).job.statusUrl;
    for (const [url, headers] of [
      [statusUrl, other.headers],
      [statusUrl, quant.headers],
      [statusUrl, {}],
      [anonymousJob, owner.headers],
    ] as const) {
      const refused = await idle.app.request(url, { headers });
      expect(refused.status).toBe(404);
      expect(((await refused.json()) as ErrorJson).error.code).toBe("NOT_FOUND");
    }
    expect((await idle.app.request(anonymousJob)).status).toBe(200);
  });

  it("still answers the owner once the job has run and its data was shrunk", async () => {
    const [owner, other] = [await t.account("client"), await t.account("client")];
    const res = await submit(t, event(), owner.headers);
    const { statusUrl } = ((await res.json()) as Accepted).job;
    const view = await eventually(async () => {
      const got = await t.app.request(statusUrl, { headers: owner.headers });
      const body = (await got.json()) as JobJson;
      return body.state === "completed" ? body : undefined;
    });
    expect(view.state).toBe("completed");
    expect((await t.app.request(statusUrl, { headers: other.headers })).status).toBe(404);
    expect((await t.app.request(statusUrl)).status).toBe(404);
  });
});

describe("job ids", () => {
  it("are unguessable: long, URL-safe and all distinct", async () => {
    // One after another: events posted at the same moment would share a job.
    const responses: Response[] = [];
    for (let i = 0; i < 100; i++) responses.push(await submit(idle, event()));
    const ids = await Promise.all(
      responses.map(async (r) => {
        expect(r.status).toBe(202);
        return ((await r.json()) as Accepted).job.id;
      }),
    );
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe("Redis down", () => {
  let redis: RedisServer;
  let ctx: TestContext | undefined;

  beforeAll(async () => {
    // With AOF as in production, so that a restart keeps what it had.
    redis = await startRedisServer(["--save", "", "--appendonly", "yes", "--appendfsync", "always"]);
    ctx = await createTestContext({ REDIS_URL: redis.url });
  });
  afterAll(async () => {
    // A test that failed mid-outage leaves Redis stopped; the context closes against a live one.
    if (!redis.running) await redis.start();
    await ctx?.close();
    await redis.remove();
  });

  it("answers 503 with Retry-After, and loses nothing that was acknowledged", async () => {
    const c = ctx as TestContext;
    const ops = await c.account("ops");
    const before = randomUUID();
    expect((await submit(c, event(before))).status).toBe(202);

    await redis.stop();
    const during = randomUUID();
    const refused = await submit(c, event(during));
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    const body = (await refused.json()) as ErrorJson;
    expect(body.error.code).toBe("SERVICE_UNAVAILABLE");
    expect(body.error.requestId).toBe(refused.headers.get("x-request-id"));
    const ready = await c.app.request("/ready");
    expect(ready.status).toBe(503);
    expect(ready.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await ready.json()).toMatchObject({ status: "unavailable", checks: { redis: { ok: false } } });

    await redis.start();
    // The client retries what was refused, as Retry-After tells it to, until it is accepted.
    await eventually(
      async () => ((await submit(c, event(during))).status === 202 ? true : undefined),
      15_000,
    );
    expect((await c.app.request("/ready")).status).toBe(200);

    c.startWorkers();
    for (const alertId of [before, during]) {
      await eventually(
        async () =>
          (await c.app.request(`/v1/alerts/${alertId}`, { headers: ops.headers })).status === 200 ||
          undefined,
      );
    }
  });
});

describe("Redis frozen", () => {
  let redis: RedisServer;
  let ctx: TestContext | undefined;

  beforeAll(async () => {
    redis = await startRedisServer();
    ctx = await createTestContext({ REDIS_URL: redis.url, ALERTS_MAX_QUEUED: "2" });
  });
  afterAll(async () => {
    // A test that failed while Redis was frozen leaves it stopped; the context closes against a live one.
    redis.signal("SIGCONT");
    await ctx?.close();
    await redis.remove();
  });

  /** Runs `requests` while Redis is frozen (SIGSTOP: its sockets open, no answer), then thaws it. */
  async function whileFrozen(requests: () => (Response | Promise<Response>)[]): Promise<Response[]> {
    redis.signal("SIGSTOP");
    try {
      return await Promise.all(requests());
    } finally {
      redis.signal("SIGCONT");
    }
  }

  const expectUnavailable = async (res: Response) => {
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    const body = (await res.json()) as ErrorJson;
    expect(body.error.code).toBe("SERVICE_UNAVAILABLE");
    return body.error.message;
  };

  it("answers every write route with 503 and Retry-After instead of holding the request", async () => {
    const c = ctx as TestContext;
    const responses = await whileFrozen(() => [
      submit(c, event()),
      submit(c, event(), { "Idempotency-Key": randomUUID() }),
      submit(c, event(), { Prefer: "wait=5" }),
      c.app.request("/v1/secrets", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: `frozen-${randomUUID()}`, encryption_key: "k", value: 1 }),
      }),
    ]);
    for (const res of responses) await expectUnavailable(res);
    // Thawed, it takes work again (once its connections notice: generous, on a loaded machine).
    await eventually(async () => ((await submit(c, event())).status === 202 ? true : undefined), 30_000);
  }, 60_000);

  it("holds at most ALERTS_MAX_QUEUED events meanwhile, refusing the others at once", async () => {
    const c = ctx as TestContext;
    const responses = await whileFrozen(() => Array.from({ length: 20 }, () => submit(c, event())));
    const messages = await Promise.all(responses.map(expectUnavailable));
    expect(
      messages.filter((m) => /too many alert events are waiting for Redis/.test(m)).length,
    ).toBeGreaterThan(0);
  });
});

describe("Redis full", () => {
  let redis: RedisServer;
  let ctx: TestContext | undefined;
  let filler: Redis;

  beforeAll(async () => {
    // As in production (noeviction, as BullMQ requires), with little room.
    redis = await startRedisServer(["--save", "", "--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    ctx = await createTestContext({ REDIS_URL: redis.url });
    filler = new Redis(redis.url);
  });
  afterAll(async () => {
    await filler.del("filler");
    filler.disconnect();
    await ctx?.close();
    await redis.remove();
  });

  /**
   * Appends to one key until Redis refuses it for memory, then lowers maxmemory by a margin, so
   * that the buffers the test's own requests free cannot bring it back under.
   */
  async function fillRedis() {
    const chunk = "x".repeat(64 * 1024);
    for (let i = 0; i < 1_000; i++) {
      const refused = await filler.append("filler", chunk).then(
        () => undefined,
        (err: Error) => err,
      );
      if (refused) {
        expect(refused.message).toMatch(/^OOM /);
        const { usedBytes } = await redisMemory(filler);
        await filler.config("SET", "maxmemory", String(usedBytes - 256 * 1024));
        return;
      }
    }
    throw new Error("Redis never filled up");
  }

  it("answers 503 with Retry-After, reports not ready and exports its memory use, until there is room", async () => {
    const c = ctx as TestContext;
    await fillRedis();
    for (const res of [
      await submit(c, event()),
      await submit(c, event(), { "Idempotency-Key": randomUUID() }),
    ]) {
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(((await res.json()) as ErrorJson).error.code).toBe("SERVICE_UNAVAILABLE");
    }
    const ready = await c.app.request("/ready");
    expect(ready.status).toBe(503);
    expect(ready.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await ready.json()).toMatchObject({ status: "unavailable", checks: { redis: { ok: false } } });
    const metrics = await (await c.app.request("/metrics")).text();
    const ratio = Number(/^conveyor_redis_memory_used_ratio (\S+)$/m.exec(metrics)?.[1]);
    expect(ratio).toBeGreaterThanOrEqual(1);

    await filler.del("filler");
    await filler.config("SET", "maxmemory", "4mb");
    expect((await submit(c, event())).status).toBe(202);
    expect((await c.app.request("/ready")).status).toBe(200);
  });
});

describe("QUEUE_MAX_WAITING", () => {
  let ctx: TestContext | undefined;
  beforeAll(async () => {
    ctx = await createTestContext({ QUEUE_MAX_WAITING: "3" });
  });
  afterAll(() => ctx?.close());

  it("answers 503 with Retry-After once that many jobs wait to run, on every submission path", async () => {
    const c = ctx as TestContext;
    // No workers: each event (one at a time, so each in a job of its own) stays waiting.
    for (let i = 0; i < 3; i++) expect((await submit(c, event())).status).toBe(202);
    const key = randomUUID();
    const body = event();
    for (const res of [await submit(c, event()), await submit(c, body, { "Idempotency-Key": key })]) {
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(((await res.json()) as ErrorJson).error).toMatchObject({
        code: "SERVICE_UNAVAILABLE",
        message: expect.stringMatching(/queue alert-ingestion is full/),
      });
    }
    expect(await jobCount(c)).toBe(3);

    // Once workers drain it, the refused request goes through, its key free again.
    c.startWorkers();
    await eventually(async () =>
      (await submit(c, body, { "Idempotency-Key": key })).status === 202 ? true : undefined,
    );
  });
});

describe("Postgres down", () => {
  it("answers reads with 503 and Retry-After, and still accepts events", async () => {
    const { stream, lines } = captureLogs();
    const logger = createLogger({ level: "warn" }, stream);
    const shutdown = createShutdownRegistry(logger, 5_000);
    const config = parseConfig(apiConfigSchema, {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/nowhere`,
      REDIS_URL: loadTestEnv().TEST_REDIS_URL,
      QUEUE_PREFIX: uniquePrefix(),
      MIGRATE_ON_START: "false",
      ...TEST_IDENTITY_ENV,
    });
    const deps = buildAppDeps(config, logger, shutdown);
    await waitForRedis(deps.redis);
    const app = createApp(deps);
    try {
      // Keys live in Postgres: even a well-formed one cannot be looked up.
      const res = await app.request("/v1/alerts", { headers: { "X-API-Key": generateApiKey() } });
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(((await res.json()) as ErrorJson).error.code).toBe("SERVICE_UNAVAILABLE");
      const ready = await app.request("/ready");
      expect(ready.status).toBe(503);
      expect(ready.headers.get("retry-after")).toMatch(/^\d+$/);
      const readiness = (await ready.json()) as { checks: Record<string, Record<string, unknown>> };
      expect(readiness).toMatchObject({ checks: { postgres: { ok: false }, redis: { ok: true } } });
      // Unauthenticated: only ok and ms per check; the driver's message (host, port) goes to the log.
      for (const name of ["postgres", "redis"])
        expect(Object.keys(readiness.checks[name] ?? {}).sort()).toEqual(["ms", "ok"]);
      expect(JSON.stringify(readiness)).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|nowhere/);
      const warned = lines
        .map(
          (l) => JSON.parse(l) as { level: number; msg: string; check?: string; err?: { message?: string } },
        )
        .find((l) => l.msg === "readiness check failed" && l.check === "postgres");
      expect(warned?.level).toBe(40);
      expect(warned?.err?.message).toEqual(expect.any(String));
      // Ingestion only enqueues: the events wait in Redis until Postgres is back.
      const accepted = await app.request("/v1/alerts/events", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(event()),
      });
      expect(accepted.status).toBe(202);
    } finally {
      await Promise.all(deps.queues.names.map((n) => deps.queues.get(n).obliterate({ force: true })));
      await shutdown.shutdown("test done");
    }
  });
});

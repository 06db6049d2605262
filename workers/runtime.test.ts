// The worker runtime against real BullMQ queues: retries with backoff, errors no retry can fix,
// payloads that do not parse, the per-job logger, and the default job options of every queue.
import { randomUUID } from "node:crypto";
import { type Job, type JobsOptions, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { createLogger, type Logger } from "../lib/logger.js";
import { createRedis, waitForRedis } from "../lib/redis.js";
import { createQueue, enqueue } from "../queues/contract.js";
import { QUEUE_NAMES, queueContracts } from "../queues/index.js";
import { captureLogs, createTestContext, eventually, uniquePrefix } from "../test/helpers/context.js";
import { trackWorker } from "../test/helpers/workers.js";
import { type Processor, type RunningWorkers, startWorkers, unrecoverable } from "./runtime.js";

const redisUrl = loadTestEnv().TEST_REDIS_URL;
const prefix = uniquePrefix();
let connection: Redis;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  connection = createRedis(redisUrl, "worker", createLogger({ level: "silent" }));
  await waitForRedis(connection);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => connection.quit());

/** A fresh queue and real workers serving it with `processor`; both torn down after the test. */
function serve(processor: Processor, logger: Logger = createLogger({ level: "silent" })) {
  const name = `test-${randomUUID()}`;
  const queue = new Queue(name, { connection, prefix });
  const running: RunningWorkers = startWorkers({
    config: { REDIS_URL: redisUrl, QUEUE_PREFIX: prefix },
    logger,
    queues: [{ queue: name, concurrency: 2, processor }],
  });
  for (const w of running.workers) trackWorker(w);
  cleanups.push(async () => {
    await running.close();
    await queue.obliterate({ force: true });
    await queue.close();
  });
  return queue;
}

/** The job once it has completed or failed (state read first, so the job read after it is whole). */
async function settled(queue: Queue, id: string | undefined, timeoutMs = 10_000): Promise<Job> {
  return eventually(async () => {
    const state = await queue.getJobState(id ?? "");
    return state === "completed" || state === "failed" ? queue.getJob(id ?? "") : undefined;
  }, timeoutMs);
}

describe("retries", () => {
  it("retries a failing job with exponential backoff until it succeeds", async () => {
    // Each attempt's job: on a failed one, BullMQ sets `delay` to the backoff before the next.
    const attempts: Job[] = [];
    const queue = serve({
      async handle(job) {
        attempts.push(job);
        if (attempts.length < 3) throw new Error(`transient failure #${attempts.length}`);
        return { ok: true };
      },
    });
    const opts: JobsOptions = { attempts: 3, backoff: { type: "exponential", delay: 100 } };
    const added = await queue.add("flaky", {}, opts);

    const job = await settled(queue, added.id);
    expect(await job.getState()).toBe("completed");
    expect(job.attemptsMade).toBe(3);
    expect(job.returnvalue).toEqual({ ok: true });
    expect(attempts).toHaveLength(3);
    // Exponential: the wait before the third attempt is twice the one before the second.
    expect(attempts.slice(0, 2).map((attempt) => attempt.delay)).toEqual([100, 200]);
  });

  it("fails a job after one attempt when the processor says no retry can fix it", async () => {
    let calls = 0;
    const queue = serve({
      async handle() {
        calls++;
        unrecoverable(new Error("payload from another planet"));
      },
    });
    const added = await queue.add("doomed", {}, { attempts: 5, backoff: { type: "fixed", delay: 10 } });

    const job = await settled(queue, added.id);
    expect(await job.getState()).toBe("failed");
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toBe("payload from another planet");
    expect(calls).toBe(1);
  });

  it("fails an alert-ingestion payload that does not parse after one attempt, writing nothing", async () => {
    const t = await createTestContext();
    cleanups.push(() => t.close());
    t.startWorkers();
    const queue = t.deps.queues.get("alert-ingestion");
    const alertId = randomUUID();
    // Straight onto the queue, as an older deploy (or anything but enqueue) could put it.
    const bad = await queue.add("alerts.ingest", {
      type: "ALERT_CREATED",
      alert: { alertId, status: "SNOOZED" },
    });
    const unknownName = await queue.add("alerts.delete", { alertId });
    // A good event after them: the worker is alive and writing, so "nothing written" means something.
    const goodId = randomUUID();
    const good = await queue.add("alerts.ingest", {
      type: "ALERT_CREATED",
      alert: { alertId: goodId, name: "ok", status: "TRIGGERED", triggeredOn: "2026-11-21T11:00:00.000Z" },
    });

    for (const added of [bad, unknownName]) {
      const job = await settled(queue, added.id);
      expect(await job.getState()).toBe("failed");
      expect(job.opts.attempts).toBeGreaterThan(1);
      expect(job.attemptsMade).toBe(1);
    }
    expect(await (await settled(queue, good.id)).getState()).toBe("completed");
    const rows = await t.deps.database.sql<{ alert_id: string }[]>`select alert_id from alerts`;
    expect(rows.map((r) => r.alert_id)).toEqual([goodId]);
  });
});

describe("alert batches", () => {
  it("writes the events of a batch that Postgres accepts, and fails only for the one it refuses", async () => {
    const t = await createTestContext();
    cleanups.push(() => t.close());
    // A constraint of this test database's own stands in for any value Postgres refuses.
    await t.deps.database.sql`alter table alerts add constraint test_no_poison check (name <> 'poison')`;
    t.startWorkers();
    const queue = t.deps.queues.get("alert-ingestion");
    const alert = (alertId: string, name: string) => ({
      type: "ALERT_CREATED" as const,
      alert: { alertId, name, status: "TRIGGERED" as const, triggeredOn: "2026-11-21T11:00:00.000Z" },
    });
    const good = [randomUUID(), randomUUID(), randomUUID()];
    const poisonId = randomUUID();
    const contract = queueContracts["alert-ingestion"];
    const batch = await enqueue(queue, contract, "alerts.ingest-batch", {
      events: [
        alert(good[0] ?? "", "ok"),
        alert(poisonId, "poison"),
        alert(good[1] ?? "", "ok"),
        alert(good[2] ?? "", "ok"),
      ],
    });
    const job = await settled(queue, batch.id);
    expect(await job.getState()).toBe("failed");
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toContain(poisonId);
    const rows = await t.deps.database.sql<
      { alert_id: string }[]
    >`select alert_id from alerts order by alert_id`;
    expect(rows.map((r) => r.alert_id)).toEqual([...good].sort());
  });
});

describe("per-job logger", () => {
  it("carries queue, job name, job id and attempt on every line the processor logs", async () => {
    const { stream, lines } = captureLogs();
    const logger = createLogger({ level: "info", name: "test" }, stream);
    let attempt = 0;
    const queue = serve(
      {
        async handle(_job, log) {
          attempt++;
          log.info({ attemptSeen: attempt }, "working on it");
          if (attempt === 1) throw new Error("once");
          return null;
        },
      },
      logger,
    );
    const added = await queue.add("logged", {}, { attempts: 2, backoff: { type: "fixed", delay: 10 } });
    expect(await (await settled(queue, added.id)).getState()).toBe("completed");

    const logged = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === "working on it");
    expect(logged).toEqual([
      expect.objectContaining({ queue: queue.name, jobName: "logged", jobId: added.id, attempt: 1 }),
      expect.objectContaining({ queue: queue.name, jobName: "logged", jobId: added.id, attempt: 2 }),
    ]);
    // The retry is announced as one, with the same fields.
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toContainEqual(
      expect.objectContaining({ msg: "job failed; will retry", queue: queue.name, jobId: added.id }),
    );
  });
});

describe("default job options", () => {
  it.each(QUEUE_NAMES)("%s: retries with exponential backoff and jitter, trims finished jobs", (name) => {
    const opts = queueContracts[name].defaultJobOptions;
    expect(opts.attempts).toBeGreaterThan(1);
    expect(opts.backoff).toMatchObject({
      type: "exponential",
      delay: expect.any(Number),
      jitter: expect.any(Number),
    });
    const backoff = opts.backoff as { delay: number; jitter: number };
    expect(backoff.delay).toBeGreaterThan(0);
    expect(backoff.jitter).toBeGreaterThan(0);
    expect(backoff.jitter).toBeLessThanOrEqual(1);
    for (const trim of [opts.removeOnComplete, opts.removeOnFail]) {
      expect(trim).toMatchObject({ age: expect.any(Number), count: expect.any(Number) });
      const { age, count } = trim as { age: number; count: number };
      expect(age).toBeGreaterThan(0);
      expect(count).toBeGreaterThan(0);
    }
  });

  it("are what a job enqueued through its contract carries", async () => {
    const contract = queueContracts["alert-ingestion"];
    const queue = createQueue(contract, connection, uniquePrefix(), createLogger({ level: "silent" }));
    cleanups.push(async () => {
      await queue.obliterate({ force: true });
      await queue.close();
    });
    const job = await enqueue(queue, contract, "alerts.ingest", {
      type: "ALERT_CREATED",
      alert: {
        alertId: randomUUID(),
        name: "x",
        status: "TRIGGERED",
        triggeredOn: "2026-11-21T11:00:00.000Z",
      },
    });
    const stored = await queue.getJob(job.id ?? "");
    expect(stored?.opts).toMatchObject({
      attempts: contract.defaultJobOptions.attempts,
      backoff: contract.defaultJobOptions.backoff,
      removeOnComplete: contract.defaultJobOptions.removeOnComplete,
      removeOnFail: contract.defaultJobOptions.removeOnFail,
    });
  });
});

// Worker processes as they run in production: separate OS processes, stopped by signals or
// killed outright. A job a process has taken is finished, handed over, or left for another
// replica; never lost.
import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createRedis, waitForRedis } from "../lib/redis.js";
import { eventually, TEST_SEAL_KEY, uniquePrefix } from "./helpers/context.js";
import { type ChildHandle, killAll, type LogLine, startProcess } from "./helpers/processes.js";

const redisUrl = loadTestEnv().TEST_REDIS_URL;
const prefix = uniquePrefix();
let connection: Redis;
let queue: Queue;
let queueName: string;

beforeAll(async () => {
  connection = createRedis(redisUrl, "worker", createLogger({ level: "silent" }));
  await waitForRedis(connection);
});
afterAll(() => connection.quit());

afterEach(async () => {
  await killAll();
  await queue.obliterate({ force: true });
  await queue.close();
});

/** The job once it has completed; its state is read first, so the job read after it is complete. */
const completed = (q: Queue, id: string | undefined) =>
  eventually(
    async () => ((await q.getJobState(id ?? "")) === "completed" ? q.getJob(id ?? "") : undefined),
    20_000,
  );

/** A queue of its own for each test, and worker processes serving it. */
function useQueue() {
  queueName = `test-${randomUUID()}`;
  queue = new Queue(queueName, { connection, prefix });
  return queue;
}

function startWorker(env: Record<string, string> = {}): ChildHandle {
  return startProcess("test-worker", "test/fixtures/test-worker.ts", {
    // The fixture never touches Postgres, but the worker config requires a URL.
    DATABASE_URL: "postgres://postgres@127.0.0.1:1/unused",
    // WORKER_QUEUES defaults to all, `encryption` included, which requires the seal key.
    JOB_SEAL_KEY: TEST_SEAL_KEY,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "info",
    // Validated by the worker config, unused by the fixture (which serves TEST_QUEUE only).
    WORKER_QUEUES: "alert-ingestion",
    TEST_QUEUE: queueName,
    ...env,
  });
}

const msg = (text: string) => (line: LogLine) => line.msg === text;
const jobStarted = (jobId: string | undefined) => (line: LogLine) =>
  line.msg === "job started" && line.jobId === jobId;

async function ready(...workers: ChildHandle[]) {
  await Promise.all(workers.map((w) => w.waitForLine(msg("worker ready"))));
}

describe("SIGTERM", () => {
  it("lets the active job finish, takes no new job, and exits 0", async () => {
    const q = useQueue();
    // Two slots: a free one that could take a new job, were the process still taking any.
    const worker = startWorker({ TEST_CONCURRENCY: "2", SHUTDOWN_TIMEOUT_MS: "20000" });
    await ready(worker);
    const slow = await q.add("slow", { ms: 1500 });
    await worker.waitForLine(jobStarted(slow.id));

    worker.child.kill("SIGTERM");
    await worker.waitForLine(msg("shutting down"));
    const late = await q.add("late", { ms: 0 });

    const { code } = await worker.waitForExit();
    expect(code).toBe(0);
    const finished = await q.getJob(slow.id ?? "");
    expect(await finished?.getState()).toBe("completed");
    expect(finished?.returnvalue).toEqual({ pid: worker.pid });
    // Not started here: still waiting, no attempt made, the processor never ran it…
    const untouched = await q.getJob(late.id ?? "");
    expect(await untouched?.getState()).toBe("waiting");
    expect(untouched?.attemptsMade).toBe(0);
    expect(worker.lines.some(jobStarted(late.id))).toBe(false);

    // …and not lost: the next replica does it.
    const next = startWorker();
    expect((await completed(q, late.id))?.returnvalue).toEqual({ pid: next.pid });
  });

  it("a second signal forces the exit while a long job still runs", async () => {
    const q = useQueue();
    // A deadline far beyond the wait below: only the second signal can end the process in time.
    const worker = startWorker({ SHUTDOWN_TIMEOUT_MS: "60000" });
    await ready(worker);
    const long = await q.add("long", { ms: 20_000 });
    await worker.waitForLine(jobStarted(long.id));

    worker.child.kill("SIGTERM");
    await worker.waitForLine(msg("shutting down"));
    // A repeat within a second counts as the same press (npm and tsx each forward a Ctrl-C).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    worker.child.kill("SIGTERM");

    const { code } = await worker.waitForExit(10_000);
    expect(code).toBe(130);
    expect(await (await q.getJob(long.id ?? ""))?.getState()).not.toBe("completed");
  });

  it("exits non-zero once SHUTDOWN_TIMEOUT_MS has passed when the job never finishes", async () => {
    const q = useQueue();
    const worker = startWorker({ SHUTDOWN_TIMEOUT_MS: "1000" });
    await ready(worker);
    const stuck = await q.add("stuck", {}); // no ms: sleeps for an hour
    await worker.waitForLine(jobStarted(stuck.id));

    worker.child.kill("SIGTERM");
    const { code } = await worker.waitForExit(15_000);
    expect(code).not.toBe(0);
    expect(worker.lines.some(msg("shutdown deadline passed; exiting anyway"))).toBe(true);
  });
});

describe("SIGKILL", () => {
  it("hands the job of a killed worker to another one, which completes it", async () => {
    const q = useQueue();
    // A short lock so that the stalled job is noticed within a couple of seconds.
    const env = { TEST_STALLED_INTERVAL_MS: "1000" };
    const workers = [startWorker(env), startWorker(env)];
    await ready(...workers);
    const job = await q.add("slow", { ms: 2_000 });
    const first = await Promise.any(workers.map((w) => w.waitForLine(jobStarted(job.id)).then(() => w)));
    const other = workers.find((w) => w !== first);
    if (!other) throw new Error("unreachable");

    first.child.kill("SIGKILL");
    await first.waitForExit();
    await other.waitForLine(jobStarted(job.id));

    expect((await completed(q, job.id))?.returnvalue).toEqual({ pid: other.pid });
    expect(await q.getJobCounts("waiting", "active", "delayed", "failed", "completed")).toMatchObject({
      waiting: 0,
      active: 0,
      delayed: 0,
      failed: 0,
      completed: 1,
    });

    other.child.kill("SIGTERM");
    expect((await other.waitForExit()).code).toBe(0);
  });
});

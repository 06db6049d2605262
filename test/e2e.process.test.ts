// End to end, as deployed: the API and two worker replicas as separate processes on a database
// of their own and a queue prefix of their own. Hundreds of alert events over HTTP, in any
// order, with duplicates; every alert must end in its right state, both replicas must have
// worked, and everything must stop cleanly on SIGTERM.
import { randomBytes, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createRedis, deleteKeys, waitForRedis } from "../lib/redis.js";
import { eventually, TEST_IDENTITY_ENV, uniquePrefix } from "./helpers/context.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { openTestIdentity, type TestIdentity } from "./helpers/identity.js";
import { type ChildHandle, freePort, killAll, type LogLine, startProcess } from "./helpers/processes.js";

type Status = "TRIGGERED" | "ACKNOWLEDGED" | "RESOLVED";
interface Expected {
  alertId: string;
  status: Status;
  acknowledgedOn: string | null;
  resolvedOn: string | null;
}

const redisUrl = loadTestEnv().TEST_REDIS_URL;
const prefix = uniquePrefix();
let db: TestDatabase;
let api: ChildHandle;
let workers: ChildHandle[];
let base: string;
let identity: TestIdentity;
/** An ops account's key: alerts are read by operators. */
let opsHeaders: Record<string, string>;
let connection: Redis;
let queue: Queue;

beforeAll(async () => {
  db = await createTestDatabase();
  identity = openTestIdentity({ databaseUrl: db.url, redisUrl, prefix });
  opsHeaders = (await identity.account("ops")).headers;
  connection = createRedis(redisUrl, "worker", createLogger({ level: "silent" }));
  await waitForRedis(connection);
  queue = new Queue("alert-ingestion", { connection, prefix });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "info",
    JOB_SEAL_KEY: randomBytes(32).toString("base64"),
    ...TEST_IDENTITY_ENV,
  };
  api = startProcess("api", "api/server.ts", { ...env, PORT: String(port), HOST: "127.0.0.1" });
  const workerEnv = { ...env, WORKER_QUEUES: "alert-ingestion", SHUTDOWN_TIMEOUT_MS: "10000" };
  workers = [
    startProcess("worker-1", "workers/main.ts", workerEnv),
    startProcess("worker-2", "workers/main.ts", workerEnv),
  ];
  const line = (msg: string) => (l: LogLine) => l.msg === msg;
  await Promise.all([
    api.waitForLine(line("api listening")),
    ...workers.map((w) => w.waitForLine(line("worker ready"))),
  ]);
  // As a load balancer would: no traffic before the API says it is ready.
  await eventually(async () => ((await fetch(`${base}/ready`)).status === 200 ? true : undefined));
});

afterAll(async () => {
  await killAll();
  await identity?.close();
  await queue?.close();
  // Every queue's keys, not only this one's: the API process opened a Queue per contract.
  if (connection) await deleteKeys(connection, `${prefix}:*`);
  await connection?.quit();
  await db?.drop();
});

const at = (minutes: number) =>
  new Date(Date.parse("2026-11-01T00:00:00.000Z") + minutes * 60_000).toISOString();

/** Events for `count` alerts of each lifecycle, and the state each alert must end in. */
function scenario(count: number) {
  const events: unknown[] = [];
  const expected: Expected[] = [];
  const alert = (alertId: string, i: number, fields: Record<string, unknown>) => ({
    alertId,
    name: `e2e alert ${i}`,
    responder: { userId: `u-${i % 7}`, name: `Responder ${i % 7}` },
    service: { serviceId: `s-${i % 5}`, name: `Service ${i % 5}` },
    triggeredOn: at(i),
    status: "TRIGGERED",
    ...fields,
  });
  for (let i = 0; i < count * 4; i++) {
    const id = randomUUID();
    const [ack, res] = [at(i + 2), at(i + 10)];
    const created = { type: "ALERT_CREATED", alert: alert(id, i, {}) };
    const acked = {
      type: "ALERT_CHANGED",
      alert: alert(id, i, { status: "ACKNOWLEDGED", acknowledgedOn: ack }),
    };
    switch (i % 4) {
      case 0: // the whole lifecycle
        events.push(created, acked, {
          type: "ALERT_CHANGED",
          alert: alert(id, i, { status: "RESOLVED", acknowledgedOn: ack, resolvedOn: res }),
        });
        expected.push({ alertId: id, status: "RESOLVED", acknowledgedOn: ack, resolvedOn: res });
        break;
      case 1: // acknowledged, still open
        events.push(created, acked);
        expected.push({ alertId: id, status: "ACKNOWLEDGED", acknowledgedOn: ack, resolvedOn: null });
        break;
      case 2: // nobody looked yet
        events.push(created);
        expected.push({ alertId: id, status: "TRIGGERED", acknowledgedOn: null, resolvedOn: null });
        break;
      default: // resolved before it was acknowledged; the acknowledgement arrives late
        events.push(
          created,
          { type: "ALERT_CHANGED", alert: alert(id, i, { status: "RESOLVED", resolvedOn: res }) },
          acked,
        );
        expected.push({ alertId: id, status: "RESOLVED", acknowledgedOn: ack, resolvedOn: res });
    }
  }
  // Every other event twice (at-least-once emitters), then everything in random order.
  const all = events.flatMap((e, i) => (i % 2 === 0 ? [e, e] : [e]));
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return { events: all, expected };
}

/** Runs `task` over `items`, `parallel` at a time. */
async function inParallel<T, R>(items: T[], parallel: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await task(items[i] as T);
      }
    }),
  );
  return results;
}

it("ingests hundreds of events through two worker processes into the right final states", async () => {
  const { events, expected } = scenario(40);
  expect(events.length).toBeGreaterThanOrEqual(500);

  const answers = await inParallel(events, 16, async (e) => {
    const res = await fetch(`${base}/v1/alerts/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(e),
    });
    const body = (await res.json()) as { job?: { id: string } };
    return { status: res.status, jobId: body.job?.id };
  });
  expect(answers.filter((a) => a.status !== 202)).toEqual([]);
  // Events posted at the same moment share a job (the API batches them into Redis).
  const jobIds = new Set(answers.map((a) => a.jobId));

  // Every job done, none failed.
  await eventually(async () => {
    const counts = await queue.getJobCounts("completed", "failed");
    if (counts.failed) throw new Error(`${counts.failed} job(s) failed`);
    return counts.completed === jobIds.size ? counts : undefined;
  }, 30_000);

  const alerts = await inParallel(expected, 16, async (e) => {
    const res = await fetch(`${base}/v1/alerts/${e.alertId}`, { headers: opsHeaders });
    expect(res.status).toBe(200);
    return (await res.json()) as Expected;
  });
  expect(
    alerts.map(({ alertId, status, acknowledgedOn, resolvedOn }) => ({
      alertId,
      status,
      acknowledgedOn,
      resolvedOn,
    })),
  ).toEqual(expected);

  const count = (s: Status) => expected.filter((e) => e.status === s).length;
  const stats = (await (await fetch(`${base}/v1/alerts/stats`, { headers: opsHeaders })).json()) as {
    total: number;
    byStatus: Record<Status, number>;
  };
  expect(stats.total).toBe(expected.length);
  expect(stats.byStatus).toEqual({
    TRIGGERED: count("TRIGGERED"),
    ACKNOWLEDGED: count("ACKNOWLEDGED"),
    RESOLVED: count("RESOLVED"),
  });

  // Both replicas did part of the work (BullMQ records the worker's name on each job it takes).
  const completed = await queue.getJobs(["completed"], 0, -1);
  const byWorker = new Map<string, number>();
  for (const job of completed)
    byWorker.set(job.processedBy ?? "?", (byWorker.get(job.processedBy ?? "?") ?? 0) + 1);
  expect([...byWorker.keys()].sort()).toEqual(workers.map((w) => `${hostname()}:${w.pid}`).sort());

  // And everything stops cleanly.
  for (const p of [api, ...workers]) p.child.kill("SIGTERM");
  const exits = await Promise.all([api, ...workers].map((p) => p.waitForExit()));
  expect(exits.map((e) => e.code)).toEqual([0, 0, 0]);
});

// Redis sizing figures: the bytes one job holds in Redis (an alert event's, a full batch's before
// and after its merge), and how long an enqueue takes to fail while Redis is frozen (SIGSTOP)
// under REDIS_COMMAND_TIMEOUT_MS. Runs against a redis-server of its own, removed at the end.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { createLogger } from "../lib/logger.js";
import { createRedis, redisMemory } from "../lib/redis.js";
import { ALERT_EVENTS_PER_JOB, type AlertEvent, alertIngestionQueue } from "../queues/alert-ingestion.js";
import { createQueue, enqueue } from "../queues/contract.js";
import { startRedisServer } from "../test/helpers/redis-server.js";
import { fmt, out } from "./support.js";

const JOBS = 2_000;
const BATCHES = 40;
const COMMAND_TIMEOUT_MS = 2_000;

const event = (): AlertEvent => ({
  type: "ALERT_CREATED",
  alert: {
    alertId: randomUUID(),
    name: "Disk usage above 90% on db-primary-01",
    status: "TRIGGERED",
    responder: { userId: "u-1", name: "Daisy Wilson" },
    service: { serviceId: "s-1", name: "Events API" },
    triggeredOn: new Date().toISOString(),
  },
});

/** used_memory grown by `run`, divided by `count`. */
async function bytesPer(redis: Redis, count: number, run: () => Promise<unknown>): Promise<number> {
  const before = (await redisMemory(redis)).usedBytes;
  await run();
  return ((await redisMemory(redis)).usedBytes - before) / count;
}

const server = await startRedisServer(["--save", "", "--maxmemory-policy", "noeviction"]);
const logger = createLogger({ level: "silent" });
const redis = createRedis(server.url, "producer", logger, { commandTimeout: COMMAND_TIMEOUT_MS });
const queue = createQueue(alertIngestionQueue, redis, "bench", logger);
try {
  await queue.waitUntilReady();
  const single = await bytesPer(redis, JOBS, async () => {
    for (let i = 0; i < JOBS; i++) await enqueue(queue, alertIngestionQueue, "alerts.ingest", event());
  });
  const jobs: string[] = [];
  const batch = await bytesPer(redis, BATCHES, async () => {
    for (let i = 0; i < BATCHES; i++) {
      const events = Array.from({ length: ALERT_EVENTS_PER_JOB }, event);
      const job = await enqueue(queue, alertIngestionQueue, "alerts.ingestBatch", { events });
      jobs.push(job.id ?? "");
    }
  });
  // What the worker leaves of a batch once merged: its count (workers/alert-ingestion.processor.ts).
  const afterMerge = await bytesPer(redis, BATCHES, async () => {
    for (const id of jobs) await (await queue.getJob(id))?.updateData({ merged: ALERT_EVENTS_PER_JOB });
  });

  server.signal("SIGSTOP");
  const failures: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    await enqueue(queue, alertIngestionQueue, "alerts.ingest", event()).catch(() => {});
    failures.push(performance.now() - started);
  }
  server.signal("SIGCONT");

  out(`alerts.ingest job (one event), waiting       ${fmt(single)} bytes`);
  out(`alerts.ingestBatch job (${ALERT_EVENTS_PER_JOB} events), waiting  ${fmt(batch)} bytes`);
  out(`the same batch job once merged ({ merged })  ${fmt(batch + afterMerge)} bytes`);
  out(
    `enqueue with Redis frozen (SIGSTOP), commandTimeout ${COMMAND_TIMEOUT_MS} ms: failed after ` +
      failures.map((ms) => `${fmt(ms)} ms`).join(", "),
  );
} finally {
  server.signal("SIGCONT");
  await queue.close();
  redis.disconnect();
  await server.remove();
}

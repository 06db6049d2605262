// Usage as deployed: the API and worker processes on a database and a queue prefix of their own.
// A worker is killed outright while it commits batches (its transactions die with it, or commit
// without their jobs completing); another replica takes the jobs over, and every acknowledged hit
// is counted exactly once. Then no e-mail address or API key of a registered client rests in
// clear in Postgres, Redis or any log.
import { randomBytes, randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createRedis, deleteKeys, scanKeys, waitForRedis } from "../lib/redis.js";
import { eventually, TEST_IDENTITY_ENV, uniquePrefix } from "./helpers/context.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { type ChildHandle, freePort, killAll, type LogLine, startProcess } from "./helpers/processes.js";

const redisUrl = loadTestEnv().TEST_REDIS_URL;
const prefix = uniquePrefix();
let db: TestDatabase;
let redis: Redis;
let base: string;
const processes: ChildHandle[] = [];
let env: Record<string, string>;

const line = (msg: string) => (l: LogLine) => l.msg === msg;

function startWorker(name: string): ChildHandle {
  const worker = startProcess(name, "workers/main.ts", { ...env, WORKER_QUEUES: "log-batching" });
  processes.push(worker);
  return worker;
}

beforeAll(async () => {
  db = await createTestDatabase();
  redis = createRedis(redisUrl, "worker", createLogger({ level: "silent" }));
  await waitForRedis(redis);
  env = {
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "info",
    JOB_SEAL_KEY: randomBytes(32).toString("base64"),
    ...TEST_IDENTITY_ENV,
    USAGE_HITS_PER_MINUTE: "1000000",
  };
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const api = startProcess("api", "api/server.ts", { ...env, PORT: String(port), HOST: "127.0.0.1" });
  processes.push(api);
  await api.waitForLine(line("api listening"));
  await eventually(async () => ((await fetch(`${base}/ready`)).status === 200 ? true : undefined));
});

afterAll(async () => {
  await killAll();
  if (redis) await deleteKeys(redis, `${prefix}:*`);
  await redis?.quit();
  await db?.drop();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

it("counts every acknowledged hit once though a worker is killed mid-batch, and keeps no key or address in clear", async () => {
  const clients = await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const email = `client-${i}-${randomUUID()}@usage.example`;
      const res = await post("/api/register", { name: `client ${i}`, email });
      expect(res.status).toBe(201);
      const made = (await res.json()) as { api_key: string };
      return { email, key: made.api_key };
    }),
  );

  const first = startWorker("worker-1");
  await first.waitForLine(line("worker ready"));
  const queue = new Queue("log-batching", { connection: redis, prefix });
  const sending = Promise.all(
    Array.from({ length: 40 }, (_, r) =>
      post(
        "/api/logs",
        { hits: Array.from({ length: 100 }, (_, i) => ({ ip: "203.0.113.9", endpoint: `/r${r}/h${i}` })) },
        { "x-api-key": (clients[r % clients.length] as { key: string }).key },
      ).then((res) => {
        expect(res.status).toBe(202);
        return 100;
      }),
    ),
  );
  // Killed while it holds jobs: their statements die with it, or commit without the job completing.
  await eventually(async () => ((await queue.getActiveCount()) > 0 ? true : undefined), 15_000, 5);
  first.child.kill("SIGKILL");
  await first.waitForExit();
  const acknowledged = (await sending).reduce((a, b) => a + b, 0);
  expect(acknowledged).toBe(4_000);

  // Another replica takes the killed worker's jobs over once their locks expire.
  startWorker("worker-2");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const counted = async () => {
      const [row] = await sql<{ rollup: number; rows: number }[]>`
        select (select coalesce(sum(hits), 0)::int from usage_daily) as rollup,
               (select count(*)::int from api_hits) as rows`;
      return row as { rollup: number; rows: number };
    };
    // Every job done, the killed worker's too (its locks expire, then a stalled-job check hands
    // them over: up to twice the 15 s lock), and nothing left to change the counts.
    const drained = async () =>
      (await queue.getActiveCount()) + (await queue.getWaitingCount()) === 0 &&
      (await counted()).rollup >= acknowledged;
    await eventually(async () => ((await drained()) ? true : undefined), 90_000, 250);
    expect(await counted()).toEqual({ rollup: acknowledged, rows: acknowledged });
    await queue.close();

    // Nothing of a client's credentials in clear: every table, every key under the prefix, every log.
    const tables = await sql<{ name: string }[]>`
      select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p')`;
    let dump = "";
    for (const { name } of tables)
      dump += (await sql.unsafe(`select t::text as row from "${name}" t`))
        .map((r) => r.row as string)
        .join("\n");
    for await (const keys of scanKeys(redis, `${prefix}:*`))
      for (const key of keys) {
        const type = await redis.type(key);
        if (type === "string") dump += await redis.get(key);
        else if (type === "hash") dump += JSON.stringify(await redis.hgetall(key));
        else if (type === "stream") dump += JSON.stringify(await redis.xrange(key, "-", "+"));
        else if (type === "list") dump += JSON.stringify(await redis.lrange(key, 0, -1));
      }
    for (const p of processes) dump += JSON.stringify(p.lines) + p.stderr();
    expect(dump).toContain("/r0/h0");
    for (const c of clients) {
      expect(dump.includes(c.email), "an e-mail address in clear").toBe(false);
      expect(dump.includes(c.key), "an API key in clear").toBe(false);
      expect(dump.includes(c.key.slice(12)), "the secret part of an API key").toBe(false);
    }
  } finally {
    await sql.end();
  }
}, 180_000);

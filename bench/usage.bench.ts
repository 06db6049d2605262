import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import postgres from "postgres";
import { z } from "zod";
import { createDatabase as openDatabase } from "../db/client.js";
import { identityConfig } from "../domains/identity/config.js";
import { COMMAND_LINE_ACTOR, createIdentityService } from "../domains/identity/service.js";
import { inheritedEnv, loadTestEnv, parseConfig, rawEnv } from "../lib/config.js";
import { randomId } from "../lib/ids.js";
import { createLogger } from "../lib/logger.js";
import { createRedis } from "../lib/redis.js";
import { logBatchingQueue } from "../queues/log-batching.js";
import { startRedisServer } from "../test/helpers/redis-server.js";
import {
  CLOCK_TICKS,
  cleanups,
  createDatabase,
  fmt,
  freePort,
  identityEnv,
  intArg,
  machineTicks,
  note,
  out,
  percentile,
  processTicks,
  RawConnection,
  redisServerPid,
  removeLogsAtCleanup,
  cleanup as runCleanups,
  sleep,
  startChild,
  startNoopWorker,
  unlessExits,
  waitFor,
  waitUntilReady,
} from "./support.js";

const QUEUE = logBatchingQueue.name;
const TARGET = {
  hitsPerSecond: 10_000,
  ackP99Ms: 20,
  readsPerSecond: 5_000,
  readP99Ms: 5,
  stalenessMs: 2_000,
};
const UNLIMITED = String(1_000_000_000);

// ---------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "64" },
    clients: { type: "string", default: "100" },
    warmup: { type: "string", default: "2" },
    "read-seconds": { type: "string", default: "3" },
    "read-connections": { type: "string", default: "16" },
    "staleness-samples": { type: "string", default: "50" },
    "outage-seconds": { type: "string", default: "10" },
    outage: { type: "string", default: "kill" },
    "no-outage": { type: "boolean", default: false },
    "no-ceiling": { type: "boolean", default: false },
    "ceiling-jobs": { type: "string", default: "25000" },
    "log-level": { type: "string", default: "warn" },
    "keep-logs": { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(`npm run bench:usage -- [options]
  --seconds N              measured ingestion time, and the Hono ceiling's (default 10)
  --connections N          keep-alive HTTP connections posting hits (default 64)
  --clients N              usage clients registered; requests rotate over their keys (default 100)
  --warmup N               seconds of warm-up ingestion, counted before measuring (default 2; 0 = none)
  --read-seconds N         seconds per read route (default 3)
  --read-connections N     keep-alive connections for the reads (default 16)
  --staleness-samples N    hits whose staleness is measured (default 50)
  --outage kill|freeze     kill: SIGKILL Redis, restart it on its AOF after the outage (default);
                           freeze: SIGSTOP, then SIGCONT
  --outage-seconds N       length of the Redis outage; ingestion runs 5 s before and after (default 10)
  --no-outage              skip the outage phase
  --no-ceiling             skip the Hono and BullMQ ceilings
  --ceiling-jobs N         jobs of the raw BullMQ ceiling (default 25000)
  --log-level L            LOG_LEVEL of the API and worker (default warn; logs go to files)
  --keep-logs              keep the API and worker logs (printed path)
  --cpu-prof DIR           run API and worker with --cpu-prof, profiles in DIR/api and DIR/worker
Servers: TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres); Redis is a
redis-server of the benchmark's own (redis-server on PATH), removed at the end.
`);
  process.exit(0);
}

if (args.outage !== "kill" && args.outage !== "freeze") {
  process.stderr.write(`--outage must be kill or freeze (got ${args.outage})\n`);
  process.exit(2);
}
const opts = {
  seconds: intArg("seconds", args.seconds, 1),
  connections: intArg("connections", args.connections, 1),
  clients: intArg("clients", args.clients, 1),
  warmup: intArg("warmup", args.warmup, 0),
  readSeconds: intArg("read-seconds", args["read-seconds"], 1),
  readConnections: intArg("read-connections", args["read-connections"], 1),
  stalenessSamples: intArg("staleness-samples", args["staleness-samples"], 1),
  outage: args.outage as "kill" | "freeze",
  outageSeconds: intArg("outage-seconds", args["outage-seconds"], 1),
  withOutage: !args["no-outage"],
  ceiling: !args["no-ceiling"],
  ceilingJobs: intArg("ceiling-jobs", args["ceiling-jobs"], 1),
  logLevel: args["log-level"] ?? "warn",
  keepLogs: args["keep-logs"] ?? false,
  cpuProf: args["cpu-prof"] === undefined ? undefined : path.resolve(args["cpu-prof"]),
};
const OUTAGE_MARGIN_SECONDS = 5;

// ---------------------------------------------------------------- cleanup and Ctrl-C

/** Set when cleaning up starts: the load stops. */
let stopping = false;
function cleanup(): Promise<void> {
  stopping = true;
  return runCleanups();
}
// As bench:alerts: one Ctrl-C may arrive several times (npm and tsx relay it); clean up once, and
// only a signal 2 s or more later forces the exit.
let signalledAt: number | undefined;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(signal, () => {
    if (signalledAt === undefined) {
      signalledAt = Date.now();
      process.stderr.write(`\n${signal}: cleaning up… (again in 2 s to force)\n`);
      void cleanup().finally(() => process.exit(130));
    } else if (Date.now() - signalledAt > 2_000) process.exit(130);
  });

// ---------------------------------------------------------------- the HTTP client

function connections(port: number, count: number): RawConnection[] {
  const conns = Array.from({ length: count }, () => new RawConnection(port));
  cleanups.push({
    name: "http connections",
    run: async () => {
      for (const c of conns) c.close();
    },
  });
  return conns;
}

function request(method: "GET" | "POST", target: string, apiKey: string | undefined, body?: string): Buffer {
  const head =
    `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    (apiKey ? `X-API-Key: ${apiKey}\r\n` : "") +
    (body === undefined
      ? "\r\n"
      : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
  return Buffer.from(body === undefined ? head : head + body);
}

const ENDPOINTS = ["/v2/orders", "/v2/items", "/v2/customers/42", "/v1/search", "/v2/checkout", "/health"];
const METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];

/** A single hit of client `c` (its index), as the ingestion phase posts it. */
function hitBody(c: number, n: number, endpoint = ENDPOINTS[n % ENDPOINTS.length]): string {
  return JSON.stringify({
    ip: `203.0.${(c >> 8) & 255}.${c & 255}`,
    endpoint,
    method: METHODS[n % METHODS.length],
    status: n % 17 === 0 ? 500 : 200,
  });
}

interface LoadResult {
  firstAt: number;
  lastAt: number;
  sent: number;
  accepted: number;
  statuses: Map<number, number>;
  latencies: Float64Array;
}

/**
 * Closed loop: each connection sends `next(i)` (i: a number of its own, from 0) as soon as its
 * last request is answered, for `seconds`. `answered` sees each answer (status 0: no answer).
 */
async function closedLoop(
  conns: RawConnection[],
  seconds: number,
  next: (i: number) => Buffer,
  answered?: (i: number, status: number, at: number) => void,
  okStatus = 202,
): Promise<LoadResult> {
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let sent = 0;
  let accepted = 0;
  let counter = 0;
  const firstAt = performance.now();
  const deadline = firstAt + seconds * 1000;
  await Promise.all(
    conns.map(async (conn) => {
      while (!stopping && performance.now() < deadline) {
        const i = counter++;
        sent++;
        const started = performance.now();
        const status = await conn.send(next(i));
        const at = performance.now();
        latencies.push(at - started);
        if (status === okStatus) accepted++;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        answered?.(i, status, at);
      }
    }),
  );
  return {
    firstAt,
    lastAt: performance.now(),
    sent,
    accepted,
    statuses,
    latencies: Float64Array.from(latencies).sort(),
  };
}

const others = (r: LoadResult, ok: number) =>
  [...r.statuses]
    .filter(([s]) => s !== ok)
    .map(([s, n]) => `${s === 0 ? "no answer" : s}×${fmt(n)}`)
    .join(", ") || "none";
const latencyLine = (l: ArrayLike<number>) =>
  `p50 ${fmt(percentile(l, 50), 2)} ms, p90 ${fmt(percentile(l, 90), 2)} ms, p99 ${fmt(percentile(l, 99), 2)} ms, ` +
  `max ${fmt(percentile(l, 100), 1)} ms`;

// ---------------------------------------------------------------- CPU accounting (Linux /proc)

function postgresTicks(): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "postgres") continue;
    } catch {
      continue;
    }
    const ticks = processTicks(Number(entry));
    if (!Number.isNaN(ticks)) total += ticks;
  }
  return total;
}

type CpuSample = { at: number; procs: Record<string, number>; machine: { busy: number; total: number } };

function sampleCpu(pids: Record<string, number | undefined>): CpuSample {
  const procs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids))
    procs[name] = pid === undefined ? Number.NaN : processTicks(pid);
  procs.postgres = postgresTicks();
  const self = process.cpuUsage();
  procs.bench = ((self.user + self.system) / 1e6) * CLOCK_TICKS;
  return { at: performance.now(), procs, machine: machineTicks() };
}

/** % of one core per process between two samples, and CPU µs per hit. */
function cpuLines(a: CpuSample, b: CpuSample, hits: number): [string, string] {
  const seconds = (b.at - a.at) / 1000;
  const share: string[] = [];
  const perHit: string[] = [];
  let total = 0;
  for (const name of Object.keys(a.procs)) {
    const cpuSeconds = ((b.procs[name] ?? Number.NaN) - (a.procs[name] ?? Number.NaN)) / CLOCK_TICKS;
    if (Number.isNaN(cpuSeconds)) continue;
    total += cpuSeconds;
    share.push(`${name} ${fmt((cpuSeconds / seconds) * 100)}%`);
    perHit.push(`${name} ${fmt((cpuSeconds / hits) * 1e6)}`);
  }
  const busy = ((b.machine.busy - a.machine.busy) / (b.machine.total - a.machine.total)) * 100;
  // What the rest of the machine used meanwhile: more than a few % means disturbed figures.
  const machineCores = (b.machine.busy - a.machine.busy) / CLOCK_TICKS / seconds;
  const others = Math.max(0, (machineCores - total / seconds) * 100);
  return [
    `${share.join(", ")}, other processes ${fmt(others)}% (% of one core; machine ${fmt(busy)}% busy, ${os.cpus().length} cores)`,
    `${perHit.join(", ")}; total ${fmt((total / hits) * 1e6)} µs CPU per hit`,
  ];
}

/** Whether a TCP connection to 127.0.0.1:`port` is refused (its server is gone). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

// ---------------------------------------------------------------- counting

// Delayed jobs count only when they carry hits (a retry): the hourly usage.maintainPartitions
// waits as a delayed job of the scheduler for the whole run.
const PENDING_STATES = ["waiting", "active", "prioritized", "paused", "waiting-children"] as const;
async function pendingJobs(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...PENDING_STATES);
  const delayed = (await queue.getDelayed()).filter((job) => job.name === "usage.logHits").length;
  return PENDING_STATES.reduce((sum, s) => sum + (counts[s] ?? 0), delayed);
}

/** Calls per Redis command so far (INFO commandstats). */
async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const m of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    calls.set(m[1] as string, Number(m[2]));
  return calls;
}

/** The commands called most between two samples, per hit. */
function callsPerHit(a: Map<string, number>, b: Map<string, number>, hits: number): string {
  const delta = [...b].map(([cmd, n]) => [cmd, n - (a.get(cmd) ?? 0)] as const).filter(([, n]) => n > 0);
  const total = delta.reduce((sum, [, n]) => sum + n, 0);
  const top = delta
    .sort((x, y) => y[1] - x[1])
    .slice(0, 8)
    .map(([cmd, n]) => `${cmd} ${fmt(n / hits, 2)}`);
  return `${top.join(", ")}; all commands ${fmt(total / hits, 2)} per hit`;
}

async function countedHits(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select coalesce(sum(hits), 0)::text as n from usage_daily`;
  return Number(row?.n ?? 0);
}
async function storedHits(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select count(*)::text as n from api_hits`;
  return Number(row?.n ?? 0);
}

/**
 * Polls usage_daily every 10 ms until it counts at least `expected` hits. Gives up once the queue
 * has been empty and the count unchanged for 5 s, or after 180 s. Returns when it first did, if it did.
 */
async function waitUntilCounted(
  sql: postgres.Sql,
  queue: Queue,
  expected: number,
): Promise<{ countedAt: number | undefined; counted: number }> {
  const giveUpAt = performance.now() + 180_000;
  let counted = -1;
  let stableSince = performance.now();
  while (!stopping && performance.now() < giveUpAt) {
    const now = await countedHits(sql);
    if (now >= expected) return { countedAt: performance.now(), counted: now };
    if (now !== counted) {
      counted = now;
      stableSince = performance.now();
    } else if (performance.now() - stableSince > 5_000 && (await pendingJobs(queue).catch(() => 1)) === 0)
      break;
    await sleep(10);
  }
  return { countedAt: undefined, counted: await countedHits(sql) };
}

// ---------------------------------------------------------------- the raw BullMQ ceiling

async function bullmqCeiling(redisUrl: string, prefix: string, accountId: string, concurrency: number) {
  const jobs = opts.ceilingJobs;
  const connection = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  connection.on("error", () => {});
  cleanups.push({ name: "ceiling redis", run: async () => connection.disconnect() });
  const queue = new Queue(QUEUE, {
    connection,
    prefix,
    defaultJobOptions: logBatchingQueue.defaultJobOptions,
  });
  await queue.waitUntilReady();
  const { child, message, stop } = startNoopWorker();
  const ready = message("ready");
  child.send({ type: "start", redisUrl, prefix, queue: QUEUE, concurrency: 256 });
  await ready;
  const done = message("done");
  child.send({ type: "expect", jobs });
  // One job per hit, as a log-batching job of one hit is (owners beside the payload).
  let next = 0;
  const started = performance.timeOrigin + performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs) {
        const n = next++;
        await queue.add(
          "usage.logHits",
          {
            hits: [
              {
                id: randomId(),
                accountId,
                at: Date.now(),
                ip: "203.0.113.7",
                endpoint: ENDPOINTS[n % ENDPOINTS.length],
                method: "GET",
                status: 200,
              },
            ],
            owners: [accountId],
          },
          { jobId: randomId() },
        );
      }
    }),
  );
  const addSeconds = (performance.timeOrigin + performance.now() - started) / 1000;
  const seconds = ((await done) - started) / 1000;
  await stop();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  connection.disconnect();
  return { jobs, perSecond: jobs / seconds, addsPerSecond: jobs / addSeconds };
}

// ---------------------------------------------------------------- main

interface Client {
  clientId: string;
  apiKey: string;
}

async function main(): Promise<number> {
  const env = loadTestEnv();
  const id = randomBytes(5).toString("hex");
  const dbName = `conveyor_bench_usage_${id}`;
  const prefix = `bench-usage-${id}`;
  const logDir = path.join(os.tmpdir(), `conveyor-bench-usage-${id}`);
  mkdirSync(logDir, { recursive: true });
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
  const totalStart = performance.now();

  out("Conveyor usage benchmark");
  out(
    `  ${os.cpus().length} cores, node ${process.version}; ingestion ${opts.seconds} s after ${opts.warmup} s warm-up, ` +
      `${opts.connections} connections, ${opts.clients} clients; reads ${opts.readSeconds} s per route over ` +
      `${opts.readConnections} connections; outage ${opts.withOutage ? `${opts.outage} ${opts.outageSeconds} s` : "skipped"}`,
  );

  // Redis of our own, as production runs it: AOF, fsync every second.
  const redisServer = await startRedisServer([
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
  ]);
  cleanups.push({ name: "redis-server", run: () => redisServer.remove() });
  const redisUrl = redisServer.url;
  const dbUrl = await createDatabase(env.TEST_PG_URL, dbName);
  removeLogsAtCleanup(logDir, opts.keepLogs);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  // Redis goes away on purpose (the outage, the end of an interrupted run): not worth a stack.
  redis.on("error", () => {});
  cleanups.push({ name: "bench redis", run: async () => redis.disconnect() });
  const redisPid = await redisServerPid(redis);
  out(
    `  children: LOG_LEVEL=${opts.logLevel}, log-batching concurrency ${rawEnv("WORKER_CONCURRENCY_LOG_BATCHING") ?? "16 (default)"}; ` +
      `database ${dbName}, queue prefix ${prefix}, redis-server :${redisServer.port} (appendonly yes, everysec)`,
  );

  const spoolDir = await mkdtemp(path.join(os.tmpdir(), "conveyor-bench-spool-"));
  cleanups.push({ name: "spool dir", run: () => rm(spoolDir, { recursive: true, force: true }) });
  const identityVars = identityEnv();
  const childEnv: NodeJS.ProcessEnv = {
    ...inheritedEnv(),
    NODE_ENV: "production",
    DATABASE_URL: dbUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: opts.logLevel,
    JOB_SEAL_KEY: rawEnv("JOB_SEAL_KEY") ?? randomBytes(32).toString("base64"),
    SECRETS_KDF_SALT: rawEnv("SECRETS_KDF_SALT") ?? randomBytes(16).toString("hex"),
    ...identityVars,
    // The per-client limits run on every request, high enough never to refuse.
    USAGE_HITS_PER_MINUTE: UNLIMITED,
    USAGE_HITS_PER_HOUR: UNLIMITED,
    USAGE_READS_PER_MINUTE: UNLIMITED,
    USAGE_READS_PER_HOUR: UNLIMITED,
    // Its 100 clients register from one address.
    USAGE_REGISTRATIONS_PER_ADDRESS_PER_HOUR: UNLIMITED,
    // As docker-compose runs it: hits acknowledged while Redis is down wait on disk.
    USAGE_SPOOL_DIR: spoolDir,
  };
  const port = await freePort();
  const api = startChild(
    "api",
    "api/server.ts",
    { ...childEnv, PORT: String(port), HOST: "127.0.0.1" },
    logDir,
    {
      cpuProfDir: opts.cpuProf,
    },
  );
  await waitUntilReady(api, port);
  const worker = startChild("worker", "workers/main.ts", { ...childEnv, WORKER_QUEUES: QUEUE }, logDir, {
    cpuProfDir: opts.cpuProf,
  });
  const probe = new Queue(QUEUE, { connection: redis, prefix });
  cleanups.push({ name: "probe queue", run: () => probe.close() });
  await unlessExits(
    worker,
    waitFor("worker", async () => (await probe.getWorkersCount()) > 0, 60_000),
  );
  const sql = postgres(dbUrl, { max: 1, idle_timeout: 0, onnotice: () => {} });
  cleanups.push({ name: "bench pg client", run: () => sql.end({ timeout: 5 }) });
  note(`api on :${port} (pid ${api.pid}), worker pid ${worker.pid}; logs in ${logDir}`);

  // Clients, over the API; an admin, as the keys command makes one.
  const clients: Client[] = [];
  for (let i = 0; i < opts.clients; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/api/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        name: `Bench client ${i}`,
        email: `client${i}@bench.example`,
        client_id: `bench-${i}`,
      }),
    });
    if (res.status !== 201) throw new Error(`register answered ${res.status}: ${await res.text()}`);
    const made = (await res.json()) as { client_id: string; api_key: string };
    clients.push({ clientId: made.client_id, apiKey: made.api_key });
  }
  const logger = createLogger({ level: "silent" });
  const identityDb = openDatabase(dbUrl, { max: 1 });
  const identityRedis = createRedis(redisUrl, "producer", logger);
  const identity = createIdentityService(
    { ...parseConfig(z.object(identityConfig), identityVars), QUEUE_PREFIX: prefix, REDIS_URL: redisUrl },
    { database: identityDb, redis: identityRedis, logger },
  );
  const admin = await identity.createAccount(COMMAND_LINE_ACTOR, {
    role: "admin",
    name: "bench admin",
    withKey: {},
  });
  const adminKey = admin.secret as string;
  const [firstAccount] = await sql<{ account_id: string }[]>`select account_id from usage_clients limit 1`;
  await identity.close();
  identityRedis.disconnect();
  await identityDb.close();
  note(`registered ${clients.length} clients and an admin`);

  // Each client's hits, made before the measured window.
  const hitRequests = clients.map((c, ci) =>
    Array.from({ length: ENDPOINTS.length }, (_, n) =>
      request("POST", "/api/logs", c.apiKey, hitBody(ci, n)),
    ),
  );
  const nextHit = (i: number) => {
    const perClient = hitRequests[i % clients.length] as Buffer[];
    return perClient[Math.floor(i / clients.length) % perClient.length] as Buffer;
  };
  const hitConns = connections(port, opts.connections);
  const pids = { api: api.pid, worker: worker.pid, redis: redisPid };

  // ---- 1. ingestion
  let acknowledged = 0;
  if (opts.warmup > 0) {
    const warm = await unlessExits(api, closedLoop(hitConns, opts.warmup, nextHit));
    acknowledged += warm.accepted;
    await unlessExits(worker, waitUntilCounted(sql, probe, acknowledged));
    note(
      `warm-up: ${fmt(warm.accepted)} hits acknowledged and counted (ack p99 ${fmt(percentile(warm.latencies, 99), 1)} ms)`,
    );
  }
  const countedBefore = await countedHits(sql);
  const callsStart = await commandCalls(redis);
  const cpuStart = sampleCpu(pids);
  const load = await unlessExits(api, closedLoop(hitConns, opts.seconds, nextHit));
  const cpuLoad = sampleCpu(pids);
  const backlog = await pendingJobs(probe);
  acknowledged += load.accepted;
  const { countedAt, counted } = await unlessExits(worker, waitUntilCounted(sql, probe, acknowledged));
  const cpuDrain = sampleCpu(pids);
  const callsDrain = await commandCalls(redis);
  await sleep(1_000); // anything counted twice would show by now
  const countedAfter = await countedHits(sql);
  const stored = await storedHits(sql);
  const loadSeconds = (load.lastAt - load.firstAt) / 1000;
  const e2eSeconds = countedAt === undefined ? Number.NaN : (countedAt - load.firstAt) / 1000;
  const e2e = load.accepted / e2eSeconds;
  const lost1 = Math.max(0, acknowledged - countedAfter);
  const double1 = Math.max(0, countedAfter - acknowledged);
  const ackP99 = percentile(load.latencies, 99);

  out();
  out("1. Ingestion: POST /api/logs (one hit per request) → API → log-batching → worker → Postgres");
  out(
    `  posted          ${fmt(load.sent)} requests in ${fmt(loadSeconds, 2)} s = ${fmt(load.sent / loadSeconds)} req/s; ` +
      `202: ${fmt(load.accepted)}, other answers: ${others(load, 202)}`,
  );
  out(`  ack latency     ${latencyLine(load.latencies)}`);
  out(
    `  counted         ${fmt(backlog)} jobs pending at the last ack; all counted in usage_daily ` +
      (countedAt === undefined
        ? `NEVER (${fmt(counted - countedBefore)} of ${fmt(load.accepted)})`
        : `${fmt((countedAt - load.lastAt) / 1000, 2)} s after it`),
  );
  out(
    `  end to end      ${fmt(e2e)} hits/s (${fmt(load.accepted)} acknowledged ÷ ${fmt(e2eSeconds, 2)} s from the first ` +
      "post to the last counted)",
  );
  out(
    `  lost            ${fmt(lost1)}; double-counted ${fmt(double1)} (incl. warm-up: ${fmt(acknowledged)} acknowledged, ` +
      `usage_daily sums ${fmt(countedAfter)}, api_hits has ${fmt(stored)} rows)`,
  );
  const [share] = cpuLines(cpuStart, cpuLoad, load.accepted);
  const [, perHit] = cpuLines(cpuStart, cpuDrain, load.accepted);
  out(`  CPU, posting    ${share}`);
  out(`  CPU µs/hit      ${perHit}`);
  out(
    `  Redis calls/hit ${callsPerHit(callsStart, callsDrain, load.accepted)} (INFO commandstats, posting + drain)`,
  );

  let hono: LoadResult | undefined;
  let bull: Awaited<ReturnType<typeof bullmqCeiling>> | undefined;
  if (opts.ceiling) {
    const honoPort = await freePort();
    const honoApp = startChild(
      "hono-ceiling",
      "bench/hono-ceiling.ts",
      { ...inheritedEnv(), PORT: String(honoPort) },
      logDir,
    );
    await waitUntilReady(honoApp, honoPort);
    const honoConns = connections(honoPort, opts.connections);
    await closedLoop(honoConns, 1, nextHit); // warm-up
    hono = await unlessExits(honoApp, closedLoop(honoConns, opts.seconds, nextHit));
    for (const c of honoConns) c.close();
    await honoApp.stop();
    bull = await bullmqCeiling(
      redisUrl,
      `${prefix}-ceiling`,
      firstAccount?.account_id ?? "bench",
      opts.connections,
    );
    const honoRate = hono.accepted / ((hono.lastAt - hono.firstAt) / 1000);
    out();
    out("Ceilings, same run, same machine");
    out(
      `  Hono POST       ${fmt(honoRate)} req/s (a trivial Hono app parsing the body and answering 202, same client, ` +
        `${opts.connections} connections; ${latencyLine(hono.latencies)}; other answers: ${others(hono, 202)})`,
    );
    out(
      `  raw BullMQ      ${fmt(bull.perSecond)} jobs/s add + no-op process (${fmt(bull.jobs)} one-hit log-batching jobs, ` +
        `${opts.connections} concurrent Queue.add, no-op Worker in its own process, concurrency 256; adds alone ` +
        `${fmt(bull.addsPerSecond)} jobs/s)`,
    );
    out(
      `  ratios          acks ÷ Hono = ${fmt(load.accepted / loadSeconds)} ÷ ${fmt(honoRate)} = ${fmt(load.accepted / loadSeconds / honoRate, 2)}; ` +
        `end to end ÷ Hono = ${fmt(e2e / honoRate, 2)}; end to end ÷ BullMQ (one job per hit) = ${fmt(e2e / bull.perSecond, 2)}`,
    );
  }

  // ---- 2. reads
  const readConns = connections(port, opts.readConnections);
  const clientDaily = clients.map((c) => request("GET", "/api/usage/daily", c.apiKey));
  const adminDaily = request("GET", "/api/usage/daily", adminKey);
  const adminTop = request("GET", "/api/usage/top", adminKey);
  const routes: { name: string; next: (i: number) => Buffer }[] = [
    { name: "daily, client key (itself)", next: (i) => clientDaily[i % clientDaily.length] as Buffer },
    { name: `daily, admin key (${clients.length} clients)`, next: () => adminDaily },
    {
      name: "daily, admin key, ?client_id=",
      next: (i) =>
        request("GET", `/api/usage/daily?client_id=${clients[i % clients.length]?.clientId}`, adminKey),
    },
    { name: "top, admin key", next: () => adminTop },
  ];
  out();
  out(
    `2. Reads: closed loop, ${opts.readConnections} connections, ${opts.readSeconds} s each ` +
      `(target ≥ ${fmt(TARGET.readsPerSecond)} req/s, p99 < ${TARGET.readP99Ms} ms)`,
  );
  const readResults: { name: string; rate: number; p99: number }[] = [];
  for (const route of routes) {
    await closedLoop(readConns, 0.5, route.next, undefined, 200); // warm-up
    const r = await unlessExits(api, closedLoop(readConns, opts.readSeconds, route.next, undefined, 200));
    const rate = r.accepted / ((r.lastAt - r.firstAt) / 1000);
    readResults.push({ name: route.name, rate, p99: percentile(r.latencies, 99) });
    out(
      `  ${route.name.padEnd(32)} ${fmt(rate).padStart(7)} req/s   ${latencyLine(r.latencies)}; other answers: ${others(r, 200)}`,
    );
  }

  // Staleness: one hit, then /api/usage/daily polled until it counts it.
  const probeClient = clients[0] as Client;
  const readDaily = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/api/usage/daily`, {
      headers: { "x-api-key": probeClient.apiKey },
    });
    const body = (await res.json()) as { clients: { daily: { requests: number }[] }[] };
    return body.clients[0]?.daily.reduce((sum, d) => sum + d.requests, 0) ?? 0;
  };
  const staleness: number[] = [];
  for (let s = 0; s < opts.stalenessSamples && !stopping; s++) {
    const baseline = await readDaily();
    const res = await fetch(`http://127.0.0.1:${port}/api/logs`, {
      method: "POST",
      headers: { "x-api-key": probeClient.apiKey, "content-type": "application/json" },
      body: hitBody(0, s),
    });
    const ackedAt = performance.now();
    if (res.status !== 202) throw new Error(`a staleness hit answered ${res.status}`);
    acknowledged++;
    const until = ackedAt + 30_000;
    while ((await readDaily()) <= baseline) {
      if (performance.now() > until) throw new Error("a staleness hit was not counted within 30 s");
      await sleep(2);
    }
    staleness.push(performance.now() - ackedAt);
  }
  staleness.sort((a, b) => a - b);
  out(
    `  staleness after a hit (202 → /api/usage/daily counts it, ${staleness.length} samples, idle): ` +
      `p50 ${fmt(percentile(staleness, 50))} ms, p99 ${fmt(percentile(staleness, 99))} ms, max ${fmt(percentile(staleness, 100))} ms ` +
      `(target ≤ ${fmt(TARGET.stalenessMs)} ms)`,
  );

  // ---- 3. a Redis outage during ingestion
  let outageLost = 0;
  let outageSummary: string | undefined;
  if (opts.withOutage) {
    const phaseSeconds = opts.outageSeconds + 2 * OUTAGE_MARGIN_SECONDS;
    // Every hit of this phase has an endpoint of its own: /outage/<run>/<n>.
    const tag = `/outage/${id}/`;
    const nextOutageHit = (i: number) =>
      request(
        "POST",
        "/api/logs",
        (clients[i % clients.length] as Client).apiKey,
        hitBody(i % clients.length, i, `${tag}${i}`),
      );
    const answers: { status: number; at: number }[] = [];
    let outageStart = Number.POSITIVE_INFINITY;
    let outageEnd = Number.POSITIVE_INFINITY;
    const running = closedLoop(hitConns, phaseSeconds, nextOutageHit, (i, status, at) => {
      answers[i] = { status, at };
    });
    await sleep(OUTAGE_MARGIN_SECONDS * 1000);
    outageStart = performance.now();
    if (opts.outage === "kill") {
      redisServer.signal("SIGKILL");
      await waitFor("redis-server killed", () => refused(redisServer.port), 5_000, 10);
    } else redisServer.signal("SIGSTOP");
    note(`Redis ${opts.outage === "kill" ? "killed" : "frozen"} for ${opts.outageSeconds} s`);
    await sleep(opts.outageSeconds * 1000);
    if (opts.outage === "kill") await redisServer.start();
    else redisServer.signal("SIGCONT");
    outageEnd = performance.now();
    note("Redis back");
    const phase = await unlessExits(api, running);

    const during = { acked: 0, refused: 0, other: new Map<number, number>() };
    let firstAckAfter: number | undefined;
    const acked: number[] = [];
    const notAcked = new Set<number>();
    answers.forEach((a, i) => {
      if (a.status === 202) acked.push(i);
      else notAcked.add(i);
      if (a.at >= outageStart && a.at < outageEnd) {
        if (a.status === 202) during.acked++;
        else if (a.status === 503) during.refused++;
        else during.other.set(a.status, (during.other.get(a.status) ?? 0) + 1);
      }
      if (a.status === 202 && a.at >= outageEnd && (firstAckAfter === undefined || a.at < firstAckAfter))
        firstAckAfter = a.at;
    });
    const before = await countedHits(sql);
    const drained = await unlessExits(worker, waitUntilCounted(sql, probe, acknowledged + acked.length));
    // Reaching the count is not enough when refused hits landed too: wait for the queue to drain.
    await waitFor("log-batching drained", async () => (await pendingJobs(probe)) === 0, 120_000, 50).catch(
      () => note("log-batching not drained after 120 s"),
    );
    await sleep(1_000);
    acknowledged += acked.length;
    const landed = await sql<{ endpoint: string; n: number }[]>`
      select endpoint, count(*)::int as n from api_hits where endpoint like ${`${tag}%`} group by endpoint`;
    const seen = new Map(landed.map((r) => [Number(r.endpoint.slice(tag.length)), r.n]));
    let lost = 0;
    let twice = 0;
    let refusedLanded = 0;
    for (const i of acked) if (!seen.has(i)) lost++;
    for (const [i, n] of seen) {
      if (n > 1) twice++;
      if (notAcked.has(i)) refusedLanded++;
    }
    const countedTotal = await countedHits(sql);
    const storedTotal = await storedHits(sql);
    outageLost = lost;
    const duringOther = [...during.other]
      .map(([s, n]) => `${s === 0 ? "no answer" : s}×${fmt(n)}`)
      .join(", ");
    out();
    out(
      `3. Redis outage: ${opts.outage === "kill" ? "SIGKILL, restarted on its AOF" : "SIGSTOP, then SIGCONT"} after ` +
        `${OUTAGE_MARGIN_SECONDS} s of ingestion, for ${opts.outageSeconds} s, then ${OUTAGE_MARGIN_SECONDS} s more (${opts.connections} connections)`,
    );
    out(
      `  whole phase     ${fmt(phase.sent)} requests: 202×${fmt(phase.accepted)}, other answers: ${others(phase, 202)}; ` +
        `ack ${latencyLine(phase.latencies)}`,
    );
    out(
      `  during outage   acknowledged ${fmt(during.acked)}, refused (503) ${fmt(during.refused)}` +
        `${duringOther ? `, other: ${duringOther}` : ""} (answers between the stop and Redis back)`,
    );
    out(
      `  recovery        first 202 ${firstAckAfter === undefined ? "never" : `${fmt(firstAckAfter - outageEnd)} ms`} after Redis was back; ` +
        `all counted ${drained.countedAt === undefined ? "NEVER" : `${fmt((drained.countedAt - phase.lastAt) / 1000, 2)} s after the last ack`}`,
    );
    out(
      `  per hit         of ${fmt(acked.length)} acknowledged: ${fmt(acked.length - lost)} landed in api_hits, lost ${fmt(lost)}, ` +
        `landed twice ${fmt(twice)}; refused but landed ${fmt(refusedLanded)} (an answer lost, the hit kept)`,
    );
    out(
      `  totals          usage_daily sums ${fmt(countedTotal)}, api_hits has ${fmt(storedTotal)} rows ` +
        `(${countedTotal === storedTotal ? "counted once" : "MISMATCH"}); ${fmt(acknowledged)} acknowledged in the whole run ` +
        `(counted before the drain: ${fmt(before)})`,
    );
    outageSummary = `lost ${fmt(lost)} of ${fmt(acked.length)} acknowledged around the outage, ${fmt(twice)} twice, usage_daily ${countedTotal === storedTotal ? "=" : "≠"} api_hits`;
  }

  await probe.close().catch(() => {});
  await api.stop();
  await worker.stop();

  out();
  out(
    `Targets: ≥ ${fmt(TARGET.hitsPerSecond)} hits/s end to end, ack p99 < ${TARGET.ackP99Ms} ms, 0 lost; reads ` +
      `≥ ${fmt(TARGET.readsPerSecond)} req/s, p99 < ${TARGET.readP99Ms} ms; staleness ≤ ${fmt(TARGET.stalenessMs)} ms`,
  );
  const line = (ok: boolean, what: string) => out(`  ${ok ? "PASS" : "FAIL"}  ${what}`);
  line(e2e >= TARGET.hitsPerSecond, `ingestion ${fmt(e2e)} hits/s end to end`);
  line(ackP99 < TARGET.ackP99Ms, `ack p99 ${fmt(ackP99, 2)} ms`);
  line(
    lost1 === 0 && double1 === 0 && countedAt !== undefined,
    `ingestion lost ${fmt(lost1)}, double-counted ${fmt(double1)}`,
  );
  for (const r of readResults)
    line(
      r.rate >= TARGET.readsPerSecond && r.p99 < TARGET.readP99Ms,
      `${r.name}: ${fmt(r.rate)} req/s, p99 ${fmt(r.p99, 2)} ms`,
    );
  line(percentile(staleness, 99) <= TARGET.stalenessMs, `staleness p99 ${fmt(percentile(staleness, 99))} ms`);
  if (outageSummary) line(outageLost === 0, `outage: ${outageSummary}`);
  note(`total run time ${fmt((performance.now() - totalStart) / 1000, 1)} s`);
  return lost1 > 0 || outageLost > 0 || countedAt === undefined ? 1 : 0;
}

let status = 1;
try {
  status = await main();
} catch (err) {
  if (signalledAt !== undefined) process.stderr.write("interrupted\n");
  else
    process.stderr.write(
      `benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
} finally {
  await cleanup();
}
process.exit(status);

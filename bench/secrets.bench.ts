// Secrets, end to end: `npm run bench:secrets -- --stores 5000 --connections 64`.
//
// Starts the API and an `encryption` worker as separate child processes against the local Redis
// and Postgres (a fresh database and a unique queue prefix, both removed at the end, also on
// Ctrl-C) and prints:
//   - the KDF's own cost: one scrypt (N=2^14, r=8, p=1) in this process, the floor of any request
//     that has to derive a key;
//   - stores per second end to end (first POST until every acknowledged store is a row in
//     Postgres), with one repeated key and with a distinct key per store;
//   - retrieval of 1,000 records by wildcard under one key: the first request (may derive the key),
//     then p50 / p99 over --requests requests; and the same against a second API with the
//     master-key cache off (SECRETS_KEY_CACHE_MAX=0), so every request pays one scrypt.
// Prints figures only, never asserts timings; exits nonzero when a store was lost.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { type AddressInfo, createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import postgres from "postgres";
import { loadTestEnv } from "../lib/config.js";
import { deriveMasterKey } from "../lib/crypto.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TARGET = { retrievalP50Ms: 100, repeatedKeyStoresPerSecond: 1_000 };
const RETRIEVAL_RECORDS = 1_000;

const { values: args } = parseArgs({
  options: {
    stores: { type: "string", default: "5000" },
    "distinct-stores": { type: "string", default: "300" },
    connections: { type: "string", default: "64" },
    requests: { type: "string", default: "30" },
    "kdf-runs": { type: "string", default: "10" },
    "worker-concurrency": { type: "string" },
    "keep-logs": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(`npm run bench:secrets -- [options]
  --stores N               stores under one repeated key (default 5000; at least ${RETRIEVAL_RECORDS})
  --distinct-stores N      stores with a key each (default 300)
  --connections N          concurrent keep-alive HTTP connections (default 64)
  --requests N             measured retrievals of ${RETRIEVAL_RECORDS} records (default 30)
  --kdf-runs N             scrypt runs timed in this process (default 10)
  --worker-concurrency N   WORKER_CONCURRENCY_ENCRYPTION (default: the worker's own)
  --keep-logs              keep the API and worker logs (printed path)
`);
  process.exit(0);
}

const int = (name: string, raw: string | undefined, min: number): number => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min}\n`);
    process.exit(2);
  }
  return n;
};
const opts = {
  stores: int("stores", args.stores, RETRIEVAL_RECORDS),
  distinctStores: int("distinct-stores", args["distinct-stores"], 1),
  connections: int("connections", args.connections, 1),
  requests: int("requests", args.requests, 1),
  kdfRuns: int("kdf-runs", args["kdf-runs"], 1),
  workerConcurrency:
    args["worker-concurrency"] === undefined
      ? undefined
      : int("worker-concurrency", args["worker-concurrency"], 1),
  keepLogs: args["keep-logs"] ?? false,
};

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const out = (line = "") => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`· ${line}\n`);

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const withDatabase = (serverUrl: string, name: string) => {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
};

// ---------------------------------------------------------------- processes and cleanup

const cleanups: { name: string; run: () => Promise<unknown> }[] = [];
let cleaningUp: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const { name, run } of cleanups.splice(0).reverse()) {
      try {
        await run();
      } catch (err) {
        process.stderr.write(`cleanup ${name} failed: ${(err as Error).message}\n`);
      }
    }
  })();
  return cleaningUp;
}

for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void cleanup().finally(() => process.exit(130));
  });

interface Child {
  name: string;
  proc: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
}

/** A child process whose output goes to a log file, stopped (gracefully, then not) at cleanup. */
function startChild(name: string, entry: string, env: NodeJS.ProcessEnv, logDir: string): Child {
  const logFile = path.join(logDir, `${name}.log`);
  const fd = openSync(logFile, "a");
  const proc = spawn(process.execPath, ["--import", "tsx", "--import", "./bench/parent-guard.ts", entry], {
    cwd: ROOT,
    env,
    stdio: ["ignore", fd, fd, "ipc"],
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  cleanups.push({
    name: `stop ${name}`,
    run: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      if (!(await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]))) {
        proc.kill("SIGKILL");
        await exited;
      }
    },
  });
  return { name, proc, logFile, exited };
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Rejects when the child exits before `promise` settles. */
function unlessExits<T>(child: Child, promise: Promise<T>): Promise<T> {
  return Promise.race([
    promise,
    child.exited.then((code) => {
      throw new Error(`${child.name} exited (code ${code}) early; log tail:\n${tail(child.logFile)}`);
    }),
  ]);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${what}: not done after ${timeoutMs} ms`);
}

/** CPU milliseconds (user + system) a process has used so far, from /proc (Linux; 0 elsewhere). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 per second).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== "0");
  return deleted;
}

// ---------------------------------------------------------------- HTTP

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function createClient(port: number, connections: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const post = (pathname: string, body: unknown): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify(body));
      const req = http.request(
        {
          agent,
          host: "127.0.0.1",
          port,
          method: "POST",
          path: pathname,
          headers: { "content-type": "application/json", "content-length": payload.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.once("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
            }),
          );
        },
      );
      req.once("error", reject);
      req.end(payload);
    });
  return { post, close: () => agent.destroy() };
}

type Client = ReturnType<typeof createClient>;

/** Runs `count` tasks over `concurrency` loops. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

// ---------------------------------------------------------------- phases

function measureKdf(runs: number): Promise<number[]> {
  const salt = randomBytes(16);
  return (async () => {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      await deriveMasterKey(`kdf-${i}`, salt);
      times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b);
  })();
}

/**
 * Posts `ids.length` stores (key chosen per index) and waits until all of them are rows in
 * Postgres. Returns the acceptance and end-to-end rates.
 */
async function storePhase(opts: {
  client: Client;
  sql: postgres.Sql;
  ids: string[];
  keyOf: (i: number) => string;
  connections: number;
  like: string;
}) {
  const rejected = new Map<number, number>();
  const started = performance.now();
  await pool(opts.ids.length, opts.connections, async (i) => {
    const id = opts.ids[i] as string;
    const res = await opts.client.post("/v1/secrets", {
      id,
      encryption_key: opts.keyOf(i),
      value: { title: `Engineer #${i}`, level: i % 7, tags: ["remote", "senior"], open: true },
    });
    if (res.status !== 202) rejected.set(res.status, (rejected.get(res.status) ?? 0) + 1);
  });
  const acknowledgedMs = performance.now() - started;
  const accepted = opts.ids.length - [...rejected.values()].reduce((a, b) => a + b, 0);
  let landed = 0;
  await waitFor(
    "stores visible in Postgres",
    async () => {
      const [row] = await opts.sql<{ n: number }[]>`
        select count(*)::int as n from secrets where id like ${opts.like}`;
      landed = row?.n ?? 0;
      return landed >= accepted;
    },
    600_000,
  );
  const endToEndMs = performance.now() - started;
  return { accepted, rejected, landed, acknowledgedMs, endToEndMs };
}

async function retrievalPhase(client: Client, key: string, requests: number) {
  const once = async () => {
    const started = performance.now();
    const res = await client.post("/v1/secrets/retrieve", { id: "ret-*", decryption_key: key });
    const ms = performance.now() - started;
    if (res.status !== 200) throw new Error(`retrieval answered ${res.status}: ${res.body.slice(0, 200)}`);
    const records = (JSON.parse(res.body) as unknown[]).length;
    if (records !== RETRIEVAL_RECORDS) throw new Error(`retrieval returned ${records} records`);
    return { ms, bytes: res.body.length };
  };
  const first = await once();
  const times: number[] = [];
  for (let i = 0; i < requests; i++) times.push((await once()).ms);
  times.sort((a, b) => a - b);
  return { first, times };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const env = loadTestEnv();
  const run = randomBytes(5).toString("hex");
  const dbName = `conveyor_bench_${run}`;
  const prefix = `bench-${run}`;
  const logDir = path.join(os.tmpdir(), `conveyor-bench-secrets-${run}`);
  mkdirSync(logDir, { recursive: true });

  out("Conveyor secrets benchmark");
  out(
    `  ${os.cpus().length} cores, node ${process.version}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}; API and worker in separate processes`,
  );

  // The floor first, while nothing else of ours runs.
  const kdf = await measureKdf(opts.kdfRuns);
  out();
  out(`KDF: one scrypt (N=16384, r=8, p=1, 32 bytes), ${opts.kdfRuns} runs in this process`);
  out(
    `  p50 ${fmt(percentile(kdf, 50), 1)} ms   min ${fmt(kdf[0] ?? 0, 1)} ms   max ${fmt(kdf.at(-1) ?? 0, 1)} ms`,
  );

  const admin = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${dbName}`);
  cleanups.push({
    name: "drop database",
    run: async () => {
      await admin.unsafe(`drop database if exists ${dbName} with (force)`);
      await admin.end({ timeout: 5 });
    },
  });
  const redis = new Redis(env.TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  cleanups.push({
    name: "delete queue keys",
    run: async () => {
      const deleted = await deleteKeys(redis, `${prefix}*`);
      note(`deleted ${deleted} Redis keys under ${prefix}*`);
      redis.disconnect();
    },
  });
  cleanups.push({
    name: "logs",
    run: async () => {
      if (opts.keepLogs) note(`logs kept in ${logDir}`);
      else rmSync(logDir, { recursive: true, force: true });
    },
  });

  const dbUrl = withDatabase(env.TEST_PG_URL, dbName);
  const childEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: "production",
    LOG_LEVEL: "warn",
    DATABASE_URL: dbUrl,
    REDIS_URL: env.TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    JOB_SEAL_KEY: randomBytes(32).toString("base64"),
    SECRETS_KDF_SALT: randomBytes(16).toString("hex"),
    // Room for the retrieval family plus every store (the retrieval asks for `ret-*` only).
    SECRETS_MAX_MATCHES: String(RETRIEVAL_RECORDS),
  };
  const apiPort = await freePort();
  const api = startChild(
    "api",
    "api/server.ts",
    { ...childEnv, PORT: String(apiPort), HOST: "127.0.0.1" },
    logDir,
  );
  await unlessExits(
    api,
    waitFor("api", async () => (await fetch(`http://127.0.0.1:${apiPort}/ready`)).status === 200, 60_000),
  );
  const worker = startChild(
    "worker",
    "workers/main.ts",
    {
      ...childEnv,
      MIGRATE_ON_START: "false",
      WORKER_QUEUES: "encryption",
      ...(opts.workerConcurrency ? { WORKER_CONCURRENCY_ENCRYPTION: String(opts.workerConcurrency) } : {}),
    },
    logDir,
  );
  // A second API with the master-key cache off: every retrieval pays its one scrypt.
  const uncachedPort = await freePort();
  const uncached = startChild(
    "api-uncached",
    "api/server.ts",
    {
      ...childEnv,
      MIGRATE_ON_START: "false",
      PORT: String(uncachedPort),
      HOST: "127.0.0.1",
      SECRETS_KEY_CACHE_MAX: "0",
    },
    logDir,
  );
  await unlessExits(
    uncached,
    waitFor(
      "api-uncached",
      async () => (await fetch(`http://127.0.0.1:${uncachedPort}/ready`)).status === 200,
      60_000,
    ),
  );
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  cleanups.push({ name: "bench pg client", run: () => sql.end({ timeout: 5 }) });
  const client = createClient(apiPort, opts.connections);
  cleanups.push({ name: "http client", run: async () => client.close() });
  note(`api :${apiPort}, api without key cache :${uncachedPort}, logs in ${logDir}`);

  // Warm-up: JIT, connections, the worker's first job.
  const warm = await storePhase({
    client,
    sql,
    ids: Array.from({ length: 200 }, (_, i) => `warm-${i}`),
    keyOf: () => "warm-up key",
    connections: opts.connections,
    like: "warm-%",
  });
  await unlessExits(worker, Promise.resolve(warm));

  let lost = 0;
  // CPU each process spent per store: unlike rates, it hardly changes when the machine is busy.
  const cpu = () => ({ api: cpuMs(api.proc.pid), worker: cpuMs(worker.proc.pid) });
  const report = (
    label: string,
    r: Awaited<ReturnType<typeof storePhase>>,
    total: number,
    before: ReturnType<typeof cpu>,
  ) => {
    const after = cpu();
    const rejected = [...r.rejected].map(([s, n]) => `${n}×${s}`).join(", ") || "none";
    lost += Math.max(0, r.accepted - r.landed);
    out(`${label}: ${fmt(total)} stores over ${opts.connections} connections`);
    out(
      `  acknowledged (202) ${fmt(r.accepted / (r.acknowledgedMs / 1000))}/s; ` +
        `end to end (all in Postgres) ${fmt(r.accepted / (r.endToEndMs / 1000))}/s ` +
        `in ${fmt(r.endToEndMs / 1000, 2)} s; rejected: ${rejected}`,
    );
    out(
      `  CPU per store: api ${fmt((after.api - before.api) / total, 2)} ms, ` +
        `worker ${fmt((after.worker - before.worker) / total, 2)} ms ` +
        `(machine load average ${os.loadavg()[0]?.toFixed(2)})`,
    );
  };

  // One repeated key: the first RETRIEVAL_RECORDS of them are the retrieval family `ret-*`.
  const repeatedKey = `repeated key ${run}`;
  const repeatedCpu = cpu();
  const repeatedIds = Array.from({ length: opts.stores }, (_, i) =>
    i < RETRIEVAL_RECORDS ? `ret-${String(i).padStart(4, "0")}` : `rep-${i}`,
  );
  const repeated = await unlessExits(
    worker,
    storePhase({
      client,
      sql,
      ids: repeatedIds,
      keyOf: () => repeatedKey,
      connections: opts.connections,
      like: "re_-%",
    }),
  );
  out();
  report("Stores, one repeated key", repeated, opts.stores, repeatedCpu);
  out(
    `  target ≥ ${fmt(TARGET.repeatedKeyStoresPerSecond)}/s end to end: ` +
      `${repeated.accepted / (repeated.endToEndMs / 1000) >= TARGET.repeatedKeyStoresPerSecond ? "met" : "NOT met"}`,
  );

  const distinctCpu = cpu();
  const distinct = await unlessExits(
    worker,
    storePhase({
      client,
      sql,
      ids: Array.from({ length: opts.distinctStores }, (_, i) => `dis-${i}`),
      keyOf: (i) => `distinct key ${run} ${i}`,
      connections: opts.connections,
      like: "dis-%",
    }),
  );
  out();
  report(
    "Stores, a distinct key each (one scrypt per store, on the worker)",
    distinct,
    opts.distinctStores,
    distinctCpu,
  );

  const cached = await retrievalPhase(client, repeatedKey, opts.requests);
  const uncachedClient = createClient(uncachedPort, 1);
  cleanups.push({ name: "http client (uncached)", run: async () => uncachedClient.close() });
  const cold = await retrievalPhase(uncachedClient, repeatedKey, opts.requests);
  out();
  out(
    `Retrieval of ${fmt(RETRIEVAL_RECORDS)} records by wildcard (ret-*) under one key, ` +
      `${opts.requests} sequential requests after one first (${fmt(cached.first.bytes / 1024)} KiB each)`,
  );
  const line = (label: string, r: typeof cached) =>
    out(
      `  ${label}: first ${fmt(r.first.ms, 1)} ms; p50 ${fmt(percentile(r.times, 50), 1)} ms, ` +
        `p99 ${fmt(percentile(r.times, 99), 1)} ms, max ${fmt(r.times.at(-1) ?? 0, 1)} ms`,
    );
  line("key cache on (default)", cached);
  line("key cache off (one scrypt per request)", cold);
  out(
    `  target p50 < ${TARGET.retrievalP50Ms} ms: ` +
      `${percentile(cached.times, 50) < TARGET.retrievalP50Ms ? "met" : "NOT met"} with the cache, ` +
      `${percentile(cold.times, 50) < TARGET.retrievalP50Ms ? "met" : "NOT met"} without`,
  );
  out();
  out(`Stores lost (acknowledged, never in Postgres): ${lost}`);
  return lost === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`benchmark failed: ${(err as Error).stack ?? String(err)}\n`);
} finally {
  await cleanup();
}
process.exit(code);

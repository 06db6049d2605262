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
//     master-key cache off (SECRETS_KEY_CACHE_MAX=0), so every request pays one scrypt;
//   - a wrong key (a new one each time, cache off) over 1,000 matches and over none: what the
//     answer's time still tells about records the key does not open;
//   - the normal retrieval's p50 while other callers flood wrong keys, from one other address and
//     from --flood-addresses addresses (127.0.0.x: Linux routes all of 127/8 to loopback).
// Prints figures only, never asserts timings; exits nonzero when a store was lost.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { deriveMasterKey } from "../domains/secrets/record.js";
import { loadTestEnv, rawEnv } from "../lib/config.js";
import {
  CLOCK_TICKS,
  cleanup,
  cleanups,
  createDatabase,
  fmt,
  freePort,
  identityEnv,
  intArg,
  note,
  out,
  percentile,
  processTicks,
  redisDeletingKeysAtCleanup,
  removeLogsAtCleanup,
  startChild,
  unlessExits,
  waitFor,
  waitUntilReady,
} from "./support.js";

const TARGET = { retrievalP50Ms: 100, repeatedKeyStoresPerSecond: 1_000 };
const RETRIEVAL_RECORDS = 1_000;

const { values: args } = parseArgs({
  options: {
    stores: { type: "string", default: "5000" },
    "distinct-stores": { type: "string", default: "300" },
    connections: { type: "string", default: "64" },
    requests: { type: "string", default: "30" },
    "kdf-runs": { type: "string", default: "10" },
    "flood-addresses": { type: "string", default: "32" },
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
  --flood-addresses N      addresses flooding wrong keys at once in the second flood (default 32, ≤ 250)
  --worker-concurrency N   WORKER_CONCURRENCY_ENCRYPTION (default: the worker's own)
  --keep-logs              keep the API and worker logs (printed path)
`);
  process.exit(0);
}

const opts = {
  stores: intArg("stores", args.stores, RETRIEVAL_RECORDS),
  distinctStores: intArg("distinct-stores", args["distinct-stores"], 1),
  connections: intArg("connections", args.connections, 1),
  requests: intArg("requests", args.requests, 1),
  kdfRuns: intArg("kdf-runs", args["kdf-runs"], 1),
  floodAddresses: Math.min(250, intArg("flood-addresses", args["flood-addresses"], 1)),
  workerConcurrency:
    args["worker-concurrency"] === undefined
      ? undefined
      : intArg("worker-concurrency", args["worker-concurrency"], 1),
  keepLogs: args["keep-logs"] ?? false,
};

// ---------------------------------------------------------------- cleanup and CPU

for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void cleanup().finally(() => process.exit(130));
  });

/** CPU milliseconds (user + system) a process has used so far, from /proc (Linux; 0 elsewhere). */
function cpuMs(pid: number): number {
  const ticks = processTicks(pid);
  return Number.isNaN(ticks) ? 0 : ticks * (1000 / CLOCK_TICKS);
}

// ---------------------------------------------------------------- HTTP

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Keep-alive requests to 127.0.0.1:port, from `localAddress` (another caller, as the API sees it). */
function createClient(port: number, connections: number, localAddress = "127.0.0.1") {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const post = (pathname: string, body: unknown): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify(body));
      const req = http.request(
        {
          agent,
          localAddress,
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

/** p50 of `requests` sequential retrievals of `pattern`, each with a key of `keyOf(i)`; any 200 counts. */
async function latencyOf(client: Client, pattern: string, keyOf: (i: number) => string, requests: number) {
  const times: number[] = [];
  for (let i = 0; i < requests; i++) {
    const started = performance.now();
    const res = await client.post("/v1/secrets/retrieve", { id: pattern, decryption_key: keyOf(i) });
    if (res.status !== 200) throw new Error(`retrieval answered ${res.status}: ${res.body.slice(0, 200)}`);
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}

/**
 * Wrong-key retrievals (a new key each, and a pattern varied the way the audit did: `ret-*`,
 * `ret-**`, …) from each of `clients` in loops until `stop` resolves; answers by status.
 */
async function flood(clients: Client[], loopsPerClient: number, stop: Promise<unknown>) {
  const statuses = new Map<number, number>();
  let done = false;
  void stop.finally(() => {
    done = true;
  });
  let n = 0;
  await Promise.all(
    clients.flatMap((client) =>
      Array.from({ length: loopsPerClient }, async () => {
        while (!done) {
          const i = n++;
          const id = `ret-${"*".repeat(1 + (i % 64))}`;
          const res = await client.post("/v1/secrets/retrieve", { id, decryption_key: `flood ${i}` });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }),
    ),
  );
  return statuses;
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

  const dbUrl = await createDatabase(env.TEST_PG_URL, dbName);
  redisDeletingKeysAtCleanup(env.TEST_REDIS_URL, prefix);
  removeLogsAtCleanup(logDir, opts.keepLogs);

  const childEnv: NodeJS.ProcessEnv = {
    PATH: rawEnv("PATH"),
    NODE_ENV: "production",
    LOG_LEVEL: "warn",
    DATABASE_URL: dbUrl,
    REDIS_URL: env.TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    JOB_SEAL_KEY: randomBytes(32).toString("base64"),
    SECRETS_KDF_SALT: randomBytes(16).toString("hex"),
    ...identityEnv(["secrets"]),
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
  await waitUntilReady(api, apiPort);
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
      // It also times wrong keys from one address, which the limits would soon refuse.
      SECRETS_FAILED_DECRYPT_LIMIT: "1000000",
      SECRETS_KDF_PER_ADDRESS_PER_MINUTE: "1000000",
    },
    logDir,
  );
  await waitUntilReady(uncached, uncachedPort);
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
  const cpu = () => ({ api: cpuMs(api.pid), worker: cpuMs(worker.pid) });
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

  // What a wrong key's answer time still says: every request derives its (new) key; the rest is
  // one HKDF and one failed AES-GCM per matched record, and the database read.
  // From an address of its own: both APIs share the counters in Redis, as replicas do, and this
  // address's failures must not lock 127.0.0.1 out of the main API.
  const guesser = createClient(uncachedPort, 1, "127.0.1.1");
  cleanups.push({ name: "http client (guesser)", run: async () => guesser.close() });
  const wrongOverAll = await latencyOf(guesser, "ret-*", (i) => `wrong ${run} a${i}`, opts.requests);
  const wrongOverNone = await latencyOf(guesser, "none-*", (i) => `wrong ${run} b${i}`, opts.requests);
  out();
  out(`Wrong key, a new one per request (key cache off), ${opts.requests} sequential requests`);
  out(`  over ${fmt(RETRIEVAL_RECORDS)} matches: p50 ${fmt(percentile(wrongOverAll, 50), 1)} ms`);
  out(`  over no match:       p50 ${fmt(percentile(wrongOverNone, 50), 1)} ms`);

  // The normal retrieval (cached key, 127.0.0.1) while other callers flood wrong keys.
  out();
  out(`Retrieval of ${fmt(RETRIEVAL_RECORDS)} records (key cache on) while others flood wrong keys`);
  const floods = [
    { label: "flood from one other address, 16 connections", addresses: 1, loops: 16 },
    {
      label: `flood from ${opts.floodAddresses} other addresses, 2 connections each`,
      addresses: opts.floodAddresses,
      loops: 2,
    },
  ];
  for (const f of floods) {
    const flooders = Array.from({ length: f.addresses }, (_, i) =>
      createClient(apiPort, f.loops, `127.0.0.${i + 2}`),
    );
    const closeFlooders = async () => {
      for (const c of flooders) c.close();
    };
    cleanups.push({ name: "flood clients", run: closeFlooders });
    let finished: () => void = () => {};
    const stop = new Promise<void>((resolve) => {
      finished = resolve;
    });
    const flooding = flood(flooders, f.loops, stop);
    const times = await latencyOf(client, "ret-*", () => repeatedKey, opts.requests).finally(finished);
    const statuses = [...(await flooding)].map(([status, n]) => `${fmt(n)}×${status}`).join(", ");
    out(`  ${f.label}: p50 ${fmt(percentile(times, 50), 1)} ms, p99 ${fmt(percentile(times, 99), 1)} ms`);
    out(`    flood answers: ${statuses}`);
    await closeFlooders();
  }
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

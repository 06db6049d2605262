// Files, end to end: `npm run bench:files -- --size-mib 1024`.
//
// Starts the API and a `chunk-hashing` worker as separate child processes against the local
// Redis (which doubles as the file store here) under a unique prefix, uploads a file of
// --size-mib MiB through PUT /v1/files/{name}, waits for its verification job, downloads it
// through GET, and then measures the raw ceiling on the same store: ioredis SET and GET of the
// same chunks with the same parallelism, no HTTP, no hashing. Prints MB/s (1 MB = 10^6 bytes)
// each way, the verification's MB/s, the API's peak RSS against the budget
// chunkSize × (parallelism + 2) + 150 MB, and ratios to the ceiling.
//
// With --idle-downloads N it then opens N downloads of that file from N client addresses
// (127.0.x.y) that read nothing, and prints how many the API admitted (200) or refused (503:
// FILE_MEMORY_BUDGET_BYTES; 429), and its RSS before, while they hang and after they leave.
//
// The file's bytes are generated on the fly (a random template, stamped with the piece number),
// never held whole in memory nor written to disk. Every key is deleted at the end, also on Ctrl-C.
// Prints figures only; the exit status is nonzero when the round trip did not return the bytes sent.
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { inheritedEnv, loadTestEnv, rawEnv } from "../lib/config.js";
import {
  type Child,
  CLOCK_TICKS,
  cleanup,
  cleanups,
  cpuProfArgs,
  fmt,
  freePort,
  identityEnv,
  intArg,
  machineTicks,
  note,
  out,
  processTicks,
  ROOT,
  redisDeletingKeysAtCleanup,
  redisServerPid,
  removeLogsAtCleanup,
  sleep,
  startChild,
  TSX_WITH_PARENT_GUARD,
  waitFor,
} from "./support.js";

const MB = 1e6;
const MIB = 1024 * 1024;
const TARGET_MB_S = 300;

const { values: args } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "1024" },
    "chunk-size": { type: "string", default: "10000000" },
    parallelism: { type: "string", default: "4" },
    "no-ceiling": { type: "boolean", default: false },
    "keep-logs": { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    "mem-trace": { type: "string" },
    "api-node-options": { type: "string" },
    "idle-downloads": { type: "string", default: "0" },
    "memory-budget-mib": { type: "string" },
    tsx: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(`npm run bench:files -- [options]
  --size-mib N      file size in MiB (default 1024)
  --chunk-size N    FILE_CHUNK_SIZE in bytes (default 10000000)
  --parallelism N   FILE_PARALLELISM (default 4)
  --no-ceiling      skip the raw ioredis SET/GET ceiling
  --keep-logs       keep the API and worker logs (printed path)
  --cpu-prof DIR    run the API and the worker with --cpu-prof, profiles written to DIR/<name>
  --mem-trace FILE  the API appends its memory every 25 ms to FILE, one JSON line each (time,
                    RSS, V8 heap, external and ArrayBuffer memory, in MB); the benchmark adds a
                    line {"at","phase"} as each phase starts
  --api-node-options=FLAGS  extra node flags for the API, e.g. --api-node-options=--trace-gc
                    (its output goes to the API log: add --keep-logs)
  --idle-downloads N  then open N downloads of the file that never read (each from an address
                    of its own) and print the API's RSS before, during and after (default 0: skip)
  --memory-budget-mib N  FILE_MEMORY_BUDGET_BYTES of the API in MiB (default: the API's, 256)
  --tsx             run the API and worker from TypeScript through tsx (as \`npm run start:api\`)
                    instead of compiled as in production (the Dockerfile's \`node dist/…\`);
                    tsx adds ~40 MB to the RSS
Servers: TEST_REDIS_URL (default redis://127.0.0.1:6379; the file store too),
         TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres; only for /ready).
`);
  process.exit(0);
}

const opts = {
  size: intArg("size-mib", args["size-mib"], 1) * MIB,
  chunkSize: intArg("chunk-size", args["chunk-size"], 1024),
  parallelism: intArg("parallelism", args.parallelism, 1),
  ceiling: !args["no-ceiling"],
  keepLogs: args["keep-logs"] ?? false,
  cpuProf: args["cpu-prof"] === undefined ? undefined : path.resolve(args["cpu-prof"]),
  memTrace: args["mem-trace"] === undefined ? undefined : path.resolve(args["mem-trace"]),
  apiNodeOptions: (args["api-node-options"] ?? "").split(/\s+/).filter(Boolean),
  idleDownloads: intArg("idle-downloads", args["idle-downloads"], 0),
  memoryBudget:
    args["memory-budget-mib"] === undefined
      ? undefined
      : intArg("memory-budget-mib", args["memory-budget-mib"], 1) * MIB,
  tsx: args.tsx ?? false,
};

const mbps = (bytes: number, ms: number) => bytes / MB / (ms / 1000);
/** Marks the start of a phase in the --mem-trace file. */
const markPhase = (phase: string) => {
  if (opts.memTrace) appendFileSync(opts.memTrace, `${JSON.stringify({ at: Date.now(), phase })}\n`);
};

// ---------------------------------------------------------------- the file's bytes

const PIECE = 4 * MIB;
const template = randomBytes(PIECE);

/** The bytes of the benchmark file from `offset`, `length` long: the template stamped with the piece number. */
function bytesAt(offset: number, length: number): Buffer {
  const outBuf = Buffer.allocUnsafe(length);
  let written = 0;
  while (written < length) {
    const at = offset + written;
    const piece = Math.floor(at / PIECE);
    const within = at % PIECE;
    const n = Math.min(PIECE - within, length - written);
    template.copy(outBuf, written, within, within + n);
    // The stamp sits in the first 8 bytes of each piece, so no two pieces are equal.
    for (let i = 0; i < 8; i++) {
      const pos = piece * PIECE + i;
      if (pos >= at && pos < at + n) outBuf[written + (pos - at)] = ((piece >>> (8 * (i % 4))) ^ i) & 0xff;
    }
    written += n;
  }
  return outBuf;
}

function* fileStream(size: number, piece = PIECE): Generator<Buffer> {
  for (let at = 0; at < size; at += piece) yield bytesAt(at, Math.min(piece, size - at));
}

// ---------------------------------------------------------------- processes

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    note(`${signal}: cleaning up`);
    void cleanup().then(() => process.exit(130));
  });
}

/** The API or the worker, with --cpu-prof, --mem-trace and --api-node-options applied. */
function launch(name: string, entry: string, env: NodeJS.ProcessEnv, logDir: string): Child {
  // Compiled entries get bench/parent-guard.ts's two lines inline: loading tsx for them alone
  // would add its memory to the RSS being measured.
  const nodeArgs = entry.endsWith(".js") ? ["--import", PARENT_GUARD_INLINE] : [...TSX_WITH_PARENT_GUARD];
  nodeArgs.push(...cpuProfArgs(opts.cpuProf, name));
  if (opts.memTrace && name === "api") nodeArgs.push("--import", memTraceInline(opts.memTrace));
  if (name === "api") nodeArgs.push(...opts.apiNodeOptions);
  return startChild(name, entry, env, logDir, { nodeArgs, stopTimeoutMs: 15_000 });
}

const PARENT_GUARD_INLINE =
  "data:text/javascript,if(process.channel){process.channel.unref();" +
  "process.once('disconnect',()=>process.kill(process.pid,'SIGTERM'))}";

/** A preload that appends the process's memory to `file` every 25 ms (--mem-trace). */
const memTraceInline = (file: string) =>
  `data:text/javascript,${encodeURIComponent(String.raw`
import { appendFileSync, readFileSync } from "node:fs";
const file = ${JSON.stringify(file)};
const mb = (n) => Math.round((n / 1048576) * 10) / 10;
setInterval(() => {
  const s = readFileSync("/proc/self/status", "utf8");
  const kb = (f) => Math.round(Number(new RegExp(f + ":\\s+(\\d+)").exec(s)?.[1] ?? 0) / 102.4) / 10;
  const m = process.memoryUsage();
  appendFileSync(file, JSON.stringify({ at: Date.now(), rss: kb("VmRSS"), anon: kb("RssAnon"),
    heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), external: mb(m.external),
    arrayBuffers: mb(m.arrayBuffers) }) + "\n");
}, 25).unref();`)}`;

/**
 * The API and worker compiled as the Dockerfile builds them (tsc -p tsconfig.build.json), into a
 * cache folder inside node_modules so that their imports resolve; returns the folder. One folder
 * per run, removed at the end: node_modules may be shared with other checkouts running this too.
 */
function compile(): string {
  const outDir = path.join(ROOT, `node_modules/.cache/conveyor-bench-dist-${process.pid}`);
  rmSync(outDir, { recursive: true, force: true });
  cleanups.push({ name: "compiled API", run: async () => rmSync(outDir, { recursive: true, force: true }) });
  note("compiling the API and worker (tsc -p tsconfig.build.json)");
  spawnSync(
    process.execPath,
    [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", outDir],
    {
      cwd: ROOT,
      stdio: "ignore",
    },
  );
  // Type errors elsewhere in the tree do not stop tsc from emitting; a missing entry does stop us.
  if (!existsSync(path.join(outDir, "api/server.js"))) throw new Error("tsc did not emit api/server.js");
  return outDir;
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** CPU seconds (user + system) a process has used. */
const cpuOf = (pid: number) => processTicks(pid) / CLOCK_TICKS;

interface Phase<T> {
  value: T;
  ms: number;
  peakRss: number;
  /** CPU seconds used during the phase by each process, and by the whole machine (all cores). */
  cpu: { api: number; redis: number; client: number; machine: number };
}

/**
 * Runs `work`, timing it, sampling the API's RSS every 20 ms and counting the CPU time of the
 * API, Redis and this process (the HTTP client), so a reader can tell who was the bottleneck.
 */
async function phase<T>(pids: { api: number; redis?: number }, work: () => Promise<T>): Promise<Phase<T>> {
  let peakRss = memoryOf(pids.api).rss;
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, memoryOf(pids.api).rss);
  }, 20);
  const before = {
    api: cpuOf(pids.api),
    redis: pids.redis ? cpuOf(pids.redis) : 0,
    client: process.cpuUsage(),
    machine: machineTicks(),
  };
  const started = performance.now();
  try {
    const value = await work();
    const ms = performance.now() - started;
    const client = process.cpuUsage(before.client);
    const machine = machineTicks();
    return {
      value,
      ms,
      peakRss,
      cpu: {
        api: cpuOf(pids.api) - before.api,
        redis: pids.redis ? cpuOf(pids.redis) - before.redis : 0,
        client: (client.user + client.system) / 1e6,
        machine: (machine.busy - before.machine.busy) / CLOCK_TICKS,
      },
    };
  } finally {
    clearInterval(timer);
  }
}

const cpuLine = (p: Phase<unknown>) => {
  const wall = p.ms / 1000;
  const pct = (s: number) => `${fmt((s / wall) * 100)}%`;
  return (
    `cpu (% of one core): api ${pct(p.cpu.api)}, redis ${pct(p.cpu.redis)}, client ${pct(p.cpu.client)}; ` +
    `machine ${pct(p.cpu.machine)} of ${os.cpus().length * 100}%; ` +
    `api ${fmt((p.cpu.api * 1000) / (opts.size / MB), 2)} CPU-ms per MB`
  );
};

// ---------------------------------------------------------------- HTTP client

function upload(port: number, name: string, size: number, sha1: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: "PUT",
      path: `/v1/files/${encodeURIComponent(name)}`,
      headers: {
        "content-length": size,
        "x-checksum-sha1": sha1,
        "content-type": "application/octet-stream",
      },
      agent: false,
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    void (async () => {
      for (const piece of fileStream(size)) {
        if (!req.write(piece)) await new Promise((r) => req.once("drain", r));
      }
      req.end();
    })().catch(reject);
  });
}

function download(port: number, name: string, hash: boolean) {
  return new Promise<{ status: number; length: number; complete: boolean; sha1?: string; header?: string }>(
    (resolve, reject) => {
      http
        .get(
          { host: "127.0.0.1", port, path: `/v1/files/${encodeURIComponent(name)}`, agent: false },
          (res) => {
            const h = hash ? createHash("sha1") : undefined;
            let length = 0;
            res.on("data", (d: Buffer) => {
              length += d.length;
              h?.update(d);
            });
            res.on("close", () =>
              resolve({
                status: res.statusCode ?? 0,
                length,
                complete: res.complete,
                sha1: h?.digest("hex"),
                header: res.headers["x-checksum-sha1"] as string | undefined,
              }),
            );
          },
        )
        .on("error", reject);
    },
  );
}

/**
 * A GET of `name` from `localAddress` (any 127.x.y.z: a client address of its own) that reads the
 * answer's first bytes and then nothing: its socket paused, the API's writes back up.
 */
function idleDownload(port: number, name: string, localAddress: string) {
  return new Promise<{ status: number; socket: net.Socket }>((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    socket.on("error", reject);
    socket.once("connect", () =>
      socket.write(`GET /v1/files/${encodeURIComponent(name)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
    );
    socket.once("data", (first: Buffer) => {
      socket.pause();
      // "HTTP/1.1 200 …"
      resolve({ status: Number(first.toString("latin1", 9, 12)), socket });
    });
  });
}

/**
 * --idle-downloads: opens that many idle downloads of `name` at once, then closes them; the API's
 * RSS before, while they hang (and its sampled peak), and 2 s and 15 s after they left.
 */
async function idleDownloads(port: number, name: string, apiPid: number) {
  const before = memoryOf(apiPid).rss;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, memoryOf(apiPid).rss);
  }, 20);
  try {
    const clients = await Promise.all(
      Array.from({ length: opts.idleDownloads }, (_, i) =>
        idleDownload(port, name, `127.0.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`),
      ),
    );
    // Every one has its answer by now; give the admitted ones a moment to fill their sockets.
    await sleep(1000);
    const during = memoryOf(apiPid).rss;
    for (const c of clients) c.socket.destroy();
    await sleep(2000);
    const after2s = memoryOf(apiPid).rss;
    await sleep(13_000);
    const after15s = memoryOf(apiPid).rss;
    const answered = (status: number) => clients.filter((c) => c.status === status).length;
    return {
      ok: answered(200),
      busy: answered(503),
      limited: answered(429),
      before,
      during,
      peak,
      after2s,
      after15s,
    };
  } finally {
    clearInterval(sampler);
  }
}

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  return (await (await fetch(url, init)).json()) as T;
}

// ---------------------------------------------------------------- raw ceiling

async function ceiling(redisUrl: string, keyPrefix: string, size: number) {
  // The same connection options as the file store's (lib/redis.ts createFileStoreRedis).
  const redis = new Redis(redisUrl, { enableAutoPipelining: false, maxRetriesPerRequest: 1 });
  const chunks = Math.ceil(size / opts.chunkSize);
  const key = (i: number) => `${keyPrefix}ceiling:${i}`;
  const expiresAt = Date.now() + 3_600_000;
  try {
    const t0 = performance.now();
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < chunks; i++) {
      const bytes = bytesAt(i * opts.chunkSize, Math.min(opts.chunkSize, size - i * opts.chunkSize));
      const p: Promise<unknown> = redis
        .set(key(i), bytes, "PXAT", expiresAt)
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= opts.parallelism) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const setMs = performance.now() - t0;

    const t1 = performance.now();
    let read = 0;
    const window: Promise<Buffer | null>[] = [];
    let next = 0;
    while (next < chunks || window.length > 0) {
      while (window.length < opts.parallelism && next < chunks) window.push(redis.getBuffer(key(next++)));
      read += (await window.shift())?.length ?? 0;
    }
    const getMs = performance.now() - t1;
    if (read !== size) throw new Error(`ceiling read ${read} bytes, wrote ${size}`);
    return { setMBs: mbps(size, setMs), getMBs: mbps(size, getMs) };
  } finally {
    for (let i = 0; i < chunks; i += 500)
      await redis.unlink(...Array.from({ length: Math.min(500, chunks - i) }, (_, j) => key(i + j)));
    redis.disconnect();
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const env = loadTestEnv();
  const prefix = `bench-files-${randomBytes(4).toString("hex")}`;
  const keyPrefix = `${prefix}:files:`;
  const redis = redisDeletingKeysAtCleanup(env.TEST_REDIS_URL, prefix);
  const redisPid = await redisServerPid(redis);
  const logDir = mkdtempSync(path.join(os.tmpdir(), "bench-files-"));
  removeLogsAtCleanup(logDir, opts.keepLogs);

  const dist = opts.tsx ? undefined : compile();
  const entry = (ts: string) => (dist ? path.join(dist, ts.replace(/\.ts$/, ".js")) : ts);
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = {
    PATH: rawEnv("PATH"),
    // glibc malloc tuning (MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_, …) reaches the children,
    // for trying its effect on the API's RSS.
    ...Object.fromEntries(Object.entries(inheritedEnv()).filter(([k]) => k.startsWith("MALLOC_"))),
    NODE_ENV: "production",
    LOG_LEVEL: "info",
    DATABASE_URL: env.TEST_PG_URL,
    MIGRATE_ON_START: "false",
    REDIS_URL: env.TEST_REDIS_URL,
    FILE_STORE_URL: env.TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    FILE_CHUNK_SIZE: String(opts.chunkSize),
    FILE_PARALLELISM: String(opts.parallelism),
    FILE_TTL_SECONDS: "3600",
    FILE_MAX_BYTES: String(Math.max(opts.size, 8 * 1024 * MIB)),
    ...(opts.memoryBudget === undefined ? {} : { FILE_MEMORY_BUDGET_BYTES: String(opts.memoryBudget) }),
    // Settings the API insists on for its other routes; nothing here uses them.
    JOB_SEAL_KEY: randomBytes(32).toString("base64"),
    SECRETS_KDF_SALT: randomBytes(16).toString("hex"),
    ...identityEnv(["files"]),
  };
  const api = launch(
    "api",
    entry("api/server.ts"),
    { ...childEnv, PORT: String(port), HOST: "127.0.0.1" },
    logDir,
  );
  const base = `http://127.0.0.1:${port}`;
  await waitFor("api", async () => (await fetch(`${base}/health`)).status === 200, 60_000, 100);
  const worker = launch(
    "worker",
    entry("workers/main.ts"),
    { ...childEnv, WORKER_QUEUES: "chunk-hashing" },
    logDir,
  );
  note(`api pid ${api.pid} on :${port}, worker pid ${worker.pid}; logs in ${logDir}`);
  const [load1] = os.loadavg();

  const idle = memoryOf(api.pid);
  markPhase("warm-up");
  // Warm-up: JIT and connections, with a small file (also proves the worker is up).
  const warm = 64 * MIB;
  const warmSha = createHash("sha1");
  for (const piece of fileStream(warm)) warmSha.update(piece);
  const warmUp = await upload(port, "warm-up", warm, warmSha.digest("hex"));
  if (warmUp.status !== 201) throw new Error(`warm-up upload: ${warmUp.status} ${warmUp.body}`);
  const warmJob = (JSON.parse(warmUp.body) as { verification: { statusUrl: string } }).verification.statusUrl;
  await waitFor(
    "warm-up verification",
    async () => (await json<{ state: string }>(`${base}${warmJob}`)).state === "completed",
    60_000,
    100,
  );
  await download(port, "warm-up", false);
  await fetch(`${base}/v1/files/warm-up`, { method: "DELETE" });
  const baseline = memoryOf(api.pid);

  // The file's SHA-1, computed before the clock starts: the client must not compete for CPU.
  note(`hashing ${fmt(opts.size / MB)} MB of generated bytes`);
  const expected = createHash("sha1");
  for (const piece of fileStream(opts.size)) expected.update(piece);
  const sha1 = expected.digest("hex");
  const name = `bench-${randomBytes(4).toString("hex")}.bin`;

  note("upload");
  markPhase("upload");
  const pids = { api: api.pid, redis: redisPid };
  const up = await phase(pids, () => upload(port, name, opts.size, sha1));
  const upMs = up.ms;
  if (up.value.status !== 201) throw new Error(`upload: ${up.value.status} ${up.value.body}`);
  const stored = JSON.parse(up.value.body) as { chunks: number; verification: { statusUrl: string } };

  note("verification job");
  markPhase("verification");
  type JobView = { state: string; result: { ms?: number; mbPerSecond?: number; outcome?: string } | null };
  let job: JobView | undefined;
  await waitFor(
    "verification",
    async () => {
      job = await json<JobView>(`${base}${stored.verification.statusUrl}`);
      return job.state === "completed" || job.state === "failed";
    },
    600_000,
    100,
  );

  note("download");
  markPhase("download");
  const down = await phase(pids, () => download(port, name, false));
  const downMs = down.ms;
  note("download again, hashed by the client");
  markPhase("download again");
  const check = await phase(pids, () => download(port, name, true));
  const checkMs = check.ms;
  const memory = memoryOf(api.pid);
  let hung: Awaited<ReturnType<typeof idleDownloads>> | undefined;
  if (opts.idleDownloads > 0) {
    note(`${opts.idleDownloads} idle downloads`);
    markPhase("idle downloads");
    hung = await idleDownloads(port, name, api.pid);
  }
  markPhase("end");
  await fetch(`${base}/v1/files/${encodeURIComponent(name)}`, { method: "DELETE" });

  let raw: { setMBs: number; getMBs: number } | undefined;
  if (opts.ceiling) {
    note("raw ceiling: ioredis SET/GET of the same chunks");
    raw = await ceiling(env.TEST_REDIS_URL, keyPrefix, opts.size);
  }

  const upMBs = mbps(opts.size, upMs);
  const downMBs = mbps(opts.size, downMs);
  const budget = opts.chunkSize * (opts.parallelism + 2) + 150 * MB;
  const ok =
    check.value.status === 200 &&
    check.value.complete &&
    check.value.length === opts.size &&
    check.value.sha1 === sha1 &&
    down.value.length === opts.size &&
    job?.state === "completed";
  const mark = (pass: boolean) => (pass ? "ok" : "MISSED");
  const ratio = (a: number, b: number | undefined) => (b ? `${fmt((a / b) * 100)}% of ceiling` : "");

  const line = (label: string, value: string, rest = "") =>
    out(`${label.padEnd(44)}${value.padStart(6)} MB/s  ${rest}`);
  out();
  out(
    `files: ${fmt(opts.size / MB)} MB (${fmt(opts.size / MIB)} MiB) in ${stored.chunks} chunks of ` +
      `${fmt(opts.chunkSize)} B, parallelism ${opts.parallelism}; 1 MB = 10^6 B`,
  );
  out(`runtime: ${dist ? "compiled (node dist/…, as in production)" : "tsx"}`);
  out(
    `machine: ${os.cpus().length} cores, load average ${fmt(load1 ?? 0, 2)} at start ` +
      "(other work on it shows as machine CPU beyond api + redis + client: figures are noisy)",
  );
  out();
  line(
    "upload (PUT, streamed, SHA-1 ×2, checked)",
    fmt(upMBs),
    `${mark(upMBs >= TARGET_MB_S)} (target ≥ ${TARGET_MB_S})  ${ratio(upMBs, raw?.setMBs)}`,
  );
  out(`    ${cpuLine(up)}`);
  line(
    "download (GET, every chunk + whole SHA-1)",
    fmt(downMBs),
    `${mark(downMBs >= TARGET_MB_S)} (target ≥ ${TARGET_MB_S})  ${ratio(downMBs, raw?.getMBs)}`,
  );
  out(`    ${cpuLine(down)}`);
  line(
    "download + SHA-1 in the client",
    fmt(mbps(opts.size, checkMs)),
    `(integrity: ${check.value.sha1 === sha1 ? "SHA-1 equal" : "SHA-1 DIFFERS"})`,
  );
  line(
    "verification job (chunk-hashing worker)",
    fmt(job?.result?.mbPerSecond ?? 0),
    `(${job?.state}, ${fmt((job?.result?.ms ?? 0) / 1000, 2)} s)`,
  );
  if (raw) {
    line("raw ceiling: ioredis SET, same chunks", fmt(raw.setMBs));
    line("raw ceiling: ioredis GET, same chunks", fmt(raw.getMBs));
  }
  out();
  out(
    `API RSS: idle ${fmt(idle.rss / MB)} MB, after warm-up ${fmt(baseline.rss / MB)} MB; sampled peak ` +
      `upload ${fmt(up.peakRss / MB)} MB, download ${fmt(Math.max(down.peakRss, check.peakRss) / MB)} MB; ` +
      `VmHWM ${fmt(memory.peak / MB)} MB`,
  );
  out(
    `API peak RSS budget: chunkSize × (parallelism + 2) + 150 MB = ${fmt(budget / MB)} MB  ` +
      `${mark(memory.peak < budget)} (VmHWM ${fmt((memory.peak / budget) * 100)}% of it)`,
  );
  if (hung) {
    // The API's own figure: FILE_MEMORY_BUDGET_BYTES (256 MiB by default), never below one transfer's buffers.
    const memoryBudget = Math.max(opts.memoryBudget ?? 256 * MIB, opts.chunkSize * (opts.parallelism + 1));
    out();
    out(
      `idle downloads: ${opts.idleDownloads} clients that never read, one address each: ${hung.ok} answered 200, ` +
        `${hung.busy} 503 (memory budget), ${hung.limited} 429`,
    );
    out(
      `API RSS: before ${fmt(hung.before / MB)} MB; while they hang ${fmt(hung.during / MB)} MB ` +
        `(sampled peak ${fmt(hung.peak / MB)} MB, +${fmt((hung.peak - hung.before) / MB)} MB); after they left: ` +
        `2 s ${fmt(hung.after2s / MB)} MB, 15 s ${fmt(hung.after15s / MB)} MB`,
    );
    out(
      `FILE_MEMORY_BUDGET_BYTES ${fmt(memoryBudget / MB)} MB: the growth while they hung is ` +
        `${fmt(((hung.peak - hung.before) / memoryBudget) * 100)}% of it`,
    );
  }
  if (!ok) out("ROUND TRIP FAILED: the bytes that came back are not the bytes sent");
  await worker.stop();
  await api.stop();
  return ok ? 0 : 1;
}

try {
  const code = await main();
  await cleanup();
  process.exit(code);
} catch (err) {
  if (!interrupted) process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await cleanup();
  process.exit(1);
}

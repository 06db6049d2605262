// What authentication costs a request: `npm run bench:auth -- --requests 4000 --connections 32`.
//
// Starts the API as a child process (a fresh database and queue prefix, removed at the end, also
// on Ctrl-C) and sends the same requests to two routes, POST /v1/alerts/events and POST
// /v1/secrets (a store, answered 202 once enqueued), three ways: without credentials (the
// anonymous caller the stock emitter and the seeds' clients are), with an API key (X-API-Key), and
// with an access token (Authorization: Bearer JWT). The key cache is warmed first. For each it
// prints the API process's CPU per request (from /proc, so the HTTP client's own work is not
// counted) and the latency p50 / p99; then what a credential adds to the anonymous request, in µs
// of CPU and as a share of the route's cost (target: ≤ 10 %). The credential's cost includes the
// per-account rate limit (one Redis call); anonymous alert events are not rate limited, anonymous
// stores are (as the anonymous tenant). Rounds alternate the three ways, so drift falls on each.
// Prints figures only, never asserts timings.
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { createDatabase as openDatabase } from "../db/client.js";
import { identityConfig } from "../domains/identity/config.js";
import { COMMAND_LINE_ACTOR, createIdentityService } from "../domains/identity/service.js";
import { loadTestEnv, parseConfig } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createRedis } from "../lib/redis.js";
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
  waitUntilReady,
} from "./support.js";

const TARGET_SHARE = 0.1;

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "4000" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    "keep-logs": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(`npm run bench:auth -- [options]
  --requests N      measured requests per route, way and round (default 4000)
  --connections N   concurrent keep-alive HTTP connections (default 32)
  --rounds N        rounds; each sends every route every way (default 3)
  --keep-logs       keep the API's log (printed path)
`);
  process.exit(0);
}

const opts = {
  requests: intArg("requests", args.requests, 100),
  connections: intArg("connections", args.connections, 1),
  rounds: intArg("rounds", args.rounds, 1),
  keepLogs: args["keep-logs"] ?? false,
};

for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void cleanup().finally(() => process.exit(130));
  });

type Way = "anonymous" | "API key" | "access token";
const WAYS: Way[] = ["anonymous", "API key", "access token"];

interface Route {
  name: string;
  path: string;
  body: () => unknown;
}

const ROUTES: Route[] = [
  {
    name: "alert event",
    path: "/v1/alerts/events",
    body: () => ({
      type: "ALERT_CREATED",
      timestamp: new Date().toISOString(),
      alert: {
        alertId: randomUUID(),
        name: "CPU high",
        status: "TRIGGERED",
        triggeredOn: new Date().toISOString(),
        responder: { userId: "u1", name: "Ada" },
        service: { serviceId: "s1", name: "checkout" },
      },
    }),
  },
  {
    name: "secret store",
    path: "/v1/secrets",
    body: () => ({
      id: `bench-${randomUUID()}`,
      encryption_key: "bench key",
      value: { n: 1, tags: ["a", "b"] },
    }),
  },
];

/** Sends `count` POSTs over `connections` keep-alive connections; the latency of each, ascending. */
async function send(
  agent: http.Agent,
  port: number,
  route: Route,
  headers: Record<string, string>,
  count: number,
  connections: number,
): Promise<number[]> {
  const times: number[] = [];
  let next = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify(route.body()));
      const started = performance.now();
      const req = http.request(
        {
          agent,
          host: "127.0.0.1",
          port,
          method: "POST",
          path: route.path,
          headers: { "content-type": "application/json", "content-length": payload.length, ...headers },
        },
        (res) => {
          res.resume();
          res.once("end", () => {
            if (res.statusCode !== 202) reject(new Error(`${route.path} answered ${res.statusCode}`));
            times.push(performance.now() - started);
            resolve();
          });
        },
      );
      req.once("error", reject);
      req.end(payload);
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next++ < count) await one();
    }),
  );
  return times.sort((a, b) => a - b);
}

interface Cell {
  cpuUs: number[];
  times: number[];
}

async function main(): Promise<number> {
  const env = loadTestEnv();
  const runId = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
  const prefix = `bench-auth-${runId}`;
  const logDir = path.join(os.tmpdir(), `conveyor-bench-auth-${runId}`);
  mkdirSync(logDir, { recursive: true });
  const dbUrl = await createDatabase(env.TEST_PG_URL, `bench_auth_${runId}`);
  redisDeletingKeysAtCleanup(env.TEST_REDIS_URL, prefix);
  removeLogsAtCleanup(logDir, opts.keepLogs);

  const identityVars = identityEnv(["secrets"]);
  const apiPort = await freePort();
  const api = startChild(
    "api",
    "api/server.ts",
    {
      PATH: process.env.PATH,
      NODE_ENV: "production",
      LOG_LEVEL: "warn",
      DATABASE_URL: dbUrl,
      REDIS_URL: env.TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      JOB_SEAL_KEY: randomBytes(32).toString("base64"),
      SECRETS_KDF_SALT: randomBytes(16).toString("hex"),
      ...identityVars,
      PORT: String(apiPort),
      HOST: "127.0.0.1",
    },
    logDir,
  );
  await waitUntilReady(api, apiPort);

  // An ops account (it may post alert events and store secrets), as the keys command makes it.
  const logger = createLogger({ level: "silent" });
  const database = openDatabase(dbUrl, { max: 2 });
  const redis = createRedis(env.TEST_REDIS_URL, "producer", logger);
  const identity = createIdentityService(
    {
      ...parseConfig(z.object(identityConfig), identityVars),
      QUEUE_PREFIX: prefix,
      REDIS_URL: env.TEST_REDIS_URL,
    },
    { database, redis, logger },
  );
  cleanups.push({
    name: "identity",
    run: async () => {
      await identity.close();
      redis.disconnect();
      await database.close();
    },
  });
  const made = await identity.createAccount(COMMAND_LINE_ACTOR, { role: "ops", name: "bench", withKey: {} });
  const apiKey = made.secret as string;
  const token = (
    await identity.issueToken({
      kind: "account",
      accountId: made.account.id,
      role: "ops",
      keyId: made.key?.id as string,
      via: "api-key",
    })
  ).token;
  const headersOf: Record<Way, Record<string, string>> = {
    anonymous: {},
    "API key": { "X-API-Key": apiKey },
    "access token": { Authorization: `Bearer ${token}` },
  };

  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.connections });
  cleanups.push({ name: "agent", run: async () => agent.destroy() });
  const cells = new Map<string, Cell>();
  const cellOf = (route: Route, way: Way) => {
    const id = `${route.name}|${way}`;
    const cell = cells.get(id) ?? { cpuUs: [], times: [] };
    cells.set(id, cell);
    return cell;
  };

  note("warming up (JIT, connections, the key cache)");
  for (const route of ROUTES)
    for (const way of WAYS) await send(agent, apiPort, route, headersOf[way], 500, opts.connections);

  for (let round = 1; round <= opts.rounds; round++) {
    note(`round ${round} of ${opts.rounds}`);
    for (const route of ROUTES)
      for (const way of WAYS) {
        const before = processTicks(api.pid);
        const times = await send(agent, apiPort, route, headersOf[way], opts.requests, opts.connections);
        const ticks = processTicks(api.pid) - before;
        const cell = cellOf(route, way);
        cell.cpuUs.push((ticks * (1e6 / CLOCK_TICKS)) / opts.requests);
        cell.times.push(...times);
      }
  }

  // The same steps in this process, without HTTP around them: what the access middleware runs.
  const caller = await identity.authenticateApiKey(apiKey);
  const inProcess = async (what: string, runs: number, step: () => Promise<unknown>) => {
    for (let i = 0; i < 200; i++) await step();
    const cpu = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < runs; i++) await step();
    const used = process.cpuUsage(cpu);
    return {
      what,
      cpuUs: (used.user + used.system) / runs,
      wallUs: ((performance.now() - started) * 1000) / runs,
    };
  };
  const steps = [
    await inProcess("API key (cache warm)", 20_000, () => identity.authenticateApiKey(apiKey)),
    await inProcess("access token (verified before)", 20_000, () => identity.authenticateToken(token)),
    await inProcess("access token (new each time)", 2_000, async () =>
      identity.authenticateToken((await identity.issueToken(caller)).token),
    ),
    await inProcess("rate limit (one Redis call)", 5_000, () => identity.limitRequest(caller)),
  ];

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  out(
    `Authentication per request (${fmt(opts.requests)} requests × ${opts.rounds} rounds per row, ` +
      `${opts.connections} connections; API CPU: median of rounds)`,
  );
  out("route         credential      API CPU µs/req   p50 ms   p99 ms   added CPU µs   share of route");
  let worst = 0;
  for (const route of ROUTES) {
    const base = median(cellOf(route, "anonymous").cpuUs);
    for (const way of WAYS) {
      const cell = cellOf(route, way);
      const cpu = median(cell.cpuUs);
      const times = cell.times.sort((a, b) => a - b);
      const added = way === "anonymous" ? "" : fmt(cpu - base, 0);
      const share = way === "anonymous" ? "" : `${fmt(((cpu - base) / base) * 100, 1)} %`;
      if (way !== "anonymous") worst = Math.max(worst, (cpu - base) / base);
      out(
        `${route.name.padEnd(14)}${way.padEnd(16)}${fmt(cpu, 0).padStart(14)}${fmt(percentile(times, 50), 2).padStart(9)}` +
          `${fmt(percentile(times, 99), 2).padStart(9)}${added.padStart(15)}${share.padStart(17)}`,
      );
    }
  }
  out();
  out("The access middleware's steps in this process (CPU µs per call; wall µs includes Redis round trips)");
  for (const step of steps)
    out(
      `  ${step.what.padEnd(34)}${fmt(step.cpuUs, 1).padStart(8)} µs CPU${fmt(step.wallUs, 1).padStart(10)} µs wall`,
    );
  out("  (a new token each time also pays for issuing one)");
  out();
  out(`Largest share: ${fmt(worst * 100, 1)} % (target ≤ ${TARGET_SHARE * 100} %)`);
  return 0;
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

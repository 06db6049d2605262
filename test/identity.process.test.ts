// Identity across real processes, as deployed: two API replicas and an encryption worker on one
// database and one Redis. A key revoked through one replica is refused by the other within a
// second (its cache is told over Redis pub/sub, long before its TTL); and after a run of
// ordinary use, no API key, access token or e-mail address rests in clear in Postgres, in Redis
// or in any process's log.
import { randomBytes, randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createRedis, deleteKeys, scanKeys, waitForRedis } from "../lib/redis.js";
import { eventually, TEST_IDENTITY_ENV, uniquePrefix } from "./helpers/context.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { openTestIdentity, type TestIdentity } from "./helpers/identity.js";
import { type ChildHandle, freePort, killAll, type LogLine, startProcess } from "./helpers/processes.js";

const redisUrl = loadTestEnv().TEST_REDIS_URL;
const prefix = uniquePrefix();
let db: TestDatabase;
let identity: TestIdentity;
let redis: Redis;
let processes: ChildHandle[] = [];
let replicas: string[] = [];
let adminHeaders: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  identity = openTestIdentity({ databaseUrl: db.url, redisUrl, prefix });
  adminHeaders = (await identity.account("admin")).headers;
  redis = createRedis(redisUrl, "worker", createLogger({ level: "silent" }));
  await waitForRedis(redis);
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "info",
    JOB_SEAL_KEY: randomBytes(32).toString("base64"),
    SECRETS_KDF_SALT: "identity-process-test-salt",
    ...TEST_IDENTITY_ENV,
    // An hour: only the eviction over pub/sub can make a replica forget a key this soon.
    API_KEY_CACHE_TTL_SECONDS: "3600",
  };
  const ports = [await freePort(), await freePort()];
  const apis = ports.map((port, i) =>
    startProcess(`api-${i + 1}`, "api/server.ts", { ...env, PORT: String(port), HOST: "127.0.0.1" }),
  );
  const worker = startProcess("worker", "workers/main.ts", { ...env, WORKER_QUEUES: "encryption" });
  processes = [...apis, worker];
  const line = (msg: string) => (l: LogLine) => l.msg === msg;
  await Promise.all([
    ...apis.map((api) => api.waitForLine(line("api listening"))),
    worker.waitForLine(line("worker ready")),
  ]);
  replicas = ports.map((port) => `http://127.0.0.1:${port}`);
  for (const base of replicas)
    await eventually(async () => ((await fetch(`${base}/ready`)).status === 200 ? true : undefined));
});

afterAll(async () => {
  await killAll();
  await identity?.close();
  if (redis) await deleteKeys(redis, `${prefix}:*`);
  await redis?.quit();
  await db?.drop();
});

const call = (base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) =>
  fetch(`${base}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

describe("identity across API replicas", () => {
  const email = `someone-${randomUUID()}@example.com`;
  let clientKey: string;
  let clientKeyId: string;
  let token: string;

  it("revokes a key on every replica within a second, and the tokens exchanged for it", async () => {
    const [first, second] = replicas as [string, string];
    const made = (await (
      await call(first, "POST", "/v1/accounts", adminHeaders, { role: "client", name: "replicated", email })
    ).json()) as { key: { id: string }; secret: string };
    clientKey = made.secret;
    clientKeyId = made.key.id;
    token = (
      (await (await call(first, "POST", "/v1/tokens", { "x-api-key": clientKey })).json()) as {
        access_token: string;
      }
    ).access_token;
    // Both credentials known to the second replica, and remembered there.
    const credentials: Record<string, string>[] = [
      { "x-api-key": clientKey },
      { authorization: `Bearer ${token}` },
    ];
    for (const headers of credentials)
      for (let i = 0; i < 3; i++)
        expect((await call(second, "GET", "/v1/accounts/me", headers)).status).toBe(200);
    // Some use worth scanning for afterwards: a stored secret, waited for.
    const stored = await call(
      second,
      "POST",
      "/v1/secrets",
      { "x-api-key": clientKey, prefer: "wait=10" },
      { id: "scanned", encryption_key: "the client's own key", value: { note: "sealed" } },
    );
    expect(stored.status).toBe(200);

    const revoked = await call(first, "POST", `/v1/keys/${clientKeyId}/revoke`, adminHeaders);
    expect(revoked.status).toBe(200);
    const revokedAt = performance.now();
    let refusedAfterMs: number | undefined;
    while (performance.now() - revokedAt < 1000) {
      if ((await call(second, "GET", "/v1/accounts/me", { "x-api-key": clientKey })).status === 401) {
        refusedAfterMs = performance.now() - revokedAt;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(refusedAfterMs, "the second replica still took the revoked key after 1 s").toBeDefined();
    process.stdout.write(`revocation reached the second replica after ${refusedAfterMs?.toFixed(1)} ms\n`);
    expect((await call(second, "GET", "/v1/accounts/me", { authorization: `Bearer ${token}` })).status).toBe(
      401,
    );
  });

  it("leaves no API key, access token or e-mail address in clear in Postgres, Redis or the logs", async () => {
    // last_used_at is flushed on shutdown: stop the processes, so all they would write is written.
    for (const p of processes) p.child.kill("SIGTERM");
    for (const p of processes) await p.waitForExit(20_000);
    const needles = {
      "the API key": clientKey,
      "the API key's secret part": clientKey.slice(12),
      "the access token": token,
      "the access token's signature": token.split(".")[2] as string,
      "the e-mail address": email,
      "the client's encryption key": "the client's own key",
    };
    const haystacks: Record<string, string> = {};

    // Postgres: every row of every table, as text (bytea as hex, so raw bytes are caught too).
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const tables = await sql<{ name: string }[]>`
        select table_name as name from information_schema.tables
        where table_schema = 'public' and table_type = 'BASE TABLE'`;
      expect(tables.map((t) => t.name)).toEqual(
        expect.arrayContaining(["accounts", "api_keys", "audit_events", "secrets"]),
      );
      for (const { name } of tables) {
        const rows = await sql.unsafe(`select t::text as row from "${name}" t`);
        haystacks[`postgres ${name}`] = rows.map((r) => r.row as string).join("\n");
      }
    } finally {
      await sql.end();
    }
    expect(haystacks["postgres api_keys"]).toContain(clientKeyId);
    const hex = (s: string) => Buffer.from(s).toString("hex");

    // Redis: every key under the prefix and its value, whatever its type.
    let redisText = "";
    for await (const keys of scanKeys(redis, `${prefix}:*`))
      for (const key of keys) {
        const type = await redis.type(key);
        const value =
          type === "string"
            ? await redis.get(key)
            : type === "hash"
              ? await redis.hgetall(key)
              : type === "list"
                ? await redis.lrange(key, 0, -1)
                : type === "set"
                  ? await redis.smembers(key)
                  : type === "zset"
                    ? await redis.zrange(key, 0, -1)
                    : type === "stream"
                      ? await redis.xrange(key, "-", "+")
                      : null;
        redisText += `${key} ${JSON.stringify(value)}\n`;
      }
    expect(redisText.length).toBeGreaterThan(0);
    haystacks.redis = redisText;
    for (const p of processes) haystacks[`${p.name} log`] = `${JSON.stringify(p.lines)}\n${p.stderr()}`;
    // The logs did record the requests (so an absence below means something).
    expect(haystacks["api-1 log"]).toContain(clientKeyId);

    for (const [where, text] of Object.entries(haystacks))
      for (const [what, needle] of Object.entries(needles)) {
        expect(text.includes(needle), `${what} in clear in ${where}`).toBe(false);
        expect(text.includes(hex(needle)), `${what} as bytes in ${where}`).toBe(false);
      }
  });
});

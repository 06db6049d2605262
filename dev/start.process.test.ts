// `npm start` (dev/start.ts) as a developer runs it: a real process against real servers,
// including the embedded Postgres and the private redis-server it starts when none answers.
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import postgres from "postgres";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { DEV_SECRETS_KDF_SALT } from "../domains/secrets/keys.js";
import { decryptRecord, deriveMasterKey } from "../domains/secrets/record.js";
import { loadTestEnv } from "../lib/config.js";
import { createSealKeyRing, decodeKey, seal } from "../lib/sealing.js";
import { storeSealContext } from "../queues/encryption.js";
import { databaseUrl } from "../test/helpers/database.js";
import { deletePrefix, uniquePrefix } from "../test/helpers/prefixes.js";
import { type ChildHandle, freePort, killAll, startProcess } from "../test/helpers/processes.js";
import { KEPT_SECRETS_FILE, type KeptSecrets } from "./kept-secrets.js";
import { isAlive } from "./processes.js";

const env = loadTestEnv();
const admin = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  await killAll();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
afterAll(() => admin.end());

/** A temp DEV_DATA_DIR the `postgres` OS user can enter (mkdtemp makes it 700). */
async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "conveyor-start-all-"));
  await chmod(dir, 0o755);
  cleanups.push(async () => {
    // A failed run may leave the servers it started: stop them by their pid files first.
    const pgPid = Number(
      (await readFile(join(dir, "postgres/postmaster.pid"), "utf8").catch(() => "")).split("\n")[0],
    );
    const redisPid = Number(await readFile(join(dir, "redis/redis.pid"), "utf8").catch(() => ""));
    if (pgPid > 0 && isAlive(pgPid)) process.kill(pgPid, "SIGQUIT");
    if (redisPid > 0 && isAlive(redisPid)) process.kill(redisPid, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** The human-readable block: stdout lines that are not JSON log lines. */
const banner = (p: ChildHandle) =>
  p.lines
    .filter((l) => !("level" in l))
    .map((l) => l.msg)
    .join("\n");

async function waitReady(p: ChildHandle, port: number, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.exited) throw new Error(`exited before ready:\n${banner(p)}\n${p.stderr()}`);
    const ok = await fetch(`http://127.0.0.1:${port}/ready`)
      .then((r) => r.status === 200)
      .catch(() => false);
    // The block is printed just after listen: wait for it too, so assertions see all of it.
    if (ok && banner(p).includes("Ctrl-C stops everything")) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready within ${timeoutMs} ms:\n${banner(p)}\n${p.stderr()}`);
}

/** The admin API key the first run prints in its block. */
const printedAdminKey = (p: ChildHandle) => /Admin key\s+(cvy_\w+)/.exec(banner(p))?.[1];

/** Posts an alert event and waits for the row (read with an operator's key): only a worker writes alerts. */
async function alertRoundTrip(port: number, operatorKey: string): Promise<void> {
  const alertId = randomUUID();
  const res = await fetch(`http://127.0.0.1:${port}/v1/alerts/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      type: "ALERT_CREATED",
      alert: {
        alertId,
        name: "start-all",
        status: "TRIGGERED",
        responder: { userId: "u-1", name: "Daisy Wilson" },
        service: { serviceId: "s-1", name: "Events API" },
        triggeredOn: "2026-11-21T11:00:00.000Z",
      },
    }),
  });
  expect(res.status).toBe(202);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const got = await fetch(`http://127.0.0.1:${port}/v1/alerts/${alertId}`, {
      headers: { "x-api-key": operatorKey },
    });
    if (got.status === 200) {
      expect(await got.json()).toMatchObject({ alertId, name: "start-all", status: "TRIGGERED" });
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`alert ${alertId} never became queryable: are the workers running?`);
}

const databaseExists = async (name: string) =>
  (await admin`select 1 from pg_database where datname = ${name}`).length === 1;

async function postgresAnswers(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

describe("npm start (dev/start.ts)", () => {
  it("serves the API, the workers and the dashboards in one process, on a database it creates", async () => {
    const name = `conveyor_sa_${randomBytes(6).toString("hex")}`;
    const prefix = uniquePrefix();
    cleanups.push(() => admin.unsafe(`drop database if exists ${name} with (force)`));
    cleanups.push(() => deletePrefix(prefix));
    expect(await databaseExists(name)).toBe(false);
    const port = await freePort();
    const p = startProcess("start-all", "dev/start.ts", {
      PORT: String(port),
      DATABASE_URL: databaseUrl(env.TEST_PG_URL, name),
      REDIS_URL: env.TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      // Nothing of this run lands in the repo's .data, whatever happens.
      DEV_DATA_DIR: await dataDir(),
    });
    await waitReady(p, port);

    expect(await databaseExists(name)).toBe(true);
    const text = banner(p);
    for (const path of ["/v1", "/docs", "/admin/queues", "/dashboard", "/metrics"]) {
      expect(text).toContain(`http://localhost:${port}${path}`);
    }
    const password = /Login\s+admin \/ (\S+)/.exec(text)?.[1];
    expect(password).toMatch(/^[\w-]{16,}$/);
    // Printed once, in the block; never in a log line.
    const everything = `${p.lines.map((l) => JSON.stringify(l)).join("\n")}\n${p.stderr()}`;
    expect(everything.split(password!).length - 1).toBe(1);

    // The generated password is the one the dashboards take.
    const dashboard = `http://127.0.0.1:${port}/dashboard`;
    expect((await fetch(dashboard)).status).toBe(401);
    const basic = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
    expect((await fetch(dashboard, { headers: { authorization: basic } })).status).toBe(200);

    // The first run's admin key: printed once, in the block, and it lets its holder in.
    const adminKey = printedAdminKey(p);
    expect(adminKey).toBeDefined();
    expect(everything.split(adminKey!).length - 1).toBe(1);
    expect(text).toContain("Anonymous    ON for secrets, files");
    const me = await fetch(`http://127.0.0.1:${port}/v1/accounts/me`, {
      headers: { "x-api-key": adminKey! },
    });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ role: "admin" });
    expect((await fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.json())) as unknown).toMatchObject({
      anonymousAccess: ["secrets", "files"],
    });

    await alertRoundTrip(port, adminKey!);

    p.child.kill("SIGTERM");
    expect(await p.waitForExit(20_000)).toEqual({ code: 0, signal: null });
  }, 90_000);

  it("keeps a secrets salt and a seal key per install, so a restart opens what the last run left", async () => {
    const name = `conveyor_sa_${randomBytes(6).toString("hex")}`;
    const prefix = `test-${randomBytes(6).toString("hex")}`;
    cleanups.push(() => admin.unsafe(`drop database if exists ${name} with (force)`));
    const redis = new Redis(env.TEST_REDIS_URL, { maxRetriesPerRequest: null });
    cleanups.push(async () => {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    });
    const dir = await dataDir();
    const port = await freePort();
    const start = () =>
      startProcess("start-all", "dev/start.ts", {
        PORT: String(port),
        DATABASE_URL: databaseUrl(env.TEST_PG_URL, name),
        REDIS_URL: env.TEST_REDIS_URL,
        QUEUE_PREFIX: prefix,
        DEV_DATA_DIR: dir,
      });
    const api = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const retrieve = async (id: string) =>
      (await api("/v1/secrets/retrieve", { id, decryption_key: "the client's key" })).json();

    const first = start();
    await waitReady(first, port);
    const adminKey = printedAdminKey(first);
    expect(adminKey).toBeDefined();
    const file = join(dir, KEPT_SECRETS_FILE);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const kept = JSON.parse(await readFile(file, "utf8")) as KeptSecrets;
    const stored = await api(
      "/v1/secrets",
      { id: "before-restart", encryption_key: "the client's key", value: "stored by the first run" },
      { Prefer: "wait=10" },
    );
    expect(stored.status).toBe(200);
    // Encrypted under the install's salt, not the public one; and nothing warned of it.
    const sql = postgres(databaseUrl(env.TEST_PG_URL, name), { max: 1, onnotice: () => {} });
    const [row] = await sql<
      { ciphertext: Buffer }[]
    >`select ciphertext from secrets where id = 'before-restart'`;
    await sql.end();
    const master = (salt: string) => deriveMasterKey("the client's key", Buffer.from(salt));
    expect(
      decryptRecord(await master(kept.SECRETS_KDF_SALT), "before-restart", row!.ciphertext).toString(),
    ).toBe('"stored by the first run"');
    await expect(
      master(DEV_SECRETS_KDF_SALT).then((m) => decryptRecord(m, "before-restart", row!.ciphertext)),
    ).rejects.toThrow();
    expect(first.lines.some((l) => String(l.msg).includes("SECRETS_KDF_SALT is unset"))).toBe(false);
    first.child.kill("SIGTERM");
    expect(await first.waitForExit(20_000)).toEqual({ code: 0, signal: null });

    // A store the API sealed just before the stop, still queued when the next run starts.
    const queued = {
      id: "queued-at-stop",
      key: "the client's key",
      value: '"queued"',
      seq: Date.now() * 1000,
    };
    const queue = new Queue("encryption", { connection: redis, prefix });
    await queue.add("secrets.store", {
      id: queued.id,
      sealed: seal(
        createSealKeyRing(decodeKey(kept.JOB_SEAL_KEY)),
        JSON.stringify(queued),
        storeSealContext(queued.id),
      ),
    });
    await queue.close();

    const second = start();
    await waitReady(second, port);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual(kept);
    // No second admin key; the first one still opens (the key it is hashed under was kept).
    expect(printedAdminKey(second)).toBeUndefined();
    const me = await fetch(`http://127.0.0.1:${port}/v1/accounts/me`, {
      headers: { "x-api-key": adminKey! },
    });
    expect(me.status).toBe(200);
    expect(await retrieve("before-restart")).toEqual([
      { id: "before-restart", value: "stored by the first run" },
    ]);
    const deadline = Date.now() + 15_000;
    let landed: unknown = [];
    while (Date.now() < deadline) {
      landed = await retrieve("queued-at-stop");
      if (Array.isArray(landed) && landed.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(landed).toEqual([{ id: "queued-at-stop", value: "queued" }]);
    second.child.kill("SIGTERM");
    expect(await second.waitForExit(20_000)).toEqual({ code: 0, signal: null });
  }, 120_000);

  it("starts an embedded Postgres and a private redis-server when none answers, and stops them", async () => {
    const dir = await dataDir();
    // Ports nothing listens on: the probes find no server there.
    const [closedPg, closedRedis, port] = await Promise.all([freePort(), freePort(), freePort()]);
    const p = startProcess("start-all", "dev/start.ts", {
      PORT: String(port),
      DEV_POSTGRES_URL: `postgres://postgres@127.0.0.1:${closedPg}/conveyor`,
      DEV_REDIS_URL: `redis://127.0.0.1:${closedRedis}`,
      DEV_DATA_DIR: dir,
    });
    await waitReady(p, port, 60_000);

    const text = banner(p);
    const pgUrl = /Postgres\s+(postgres:\/\/\S+)\s+\(embedded, data in (\S+)\)/.exec(text);
    const redisUrl = /Redis\s+(redis:\/\/\S+)\s+\(private redis-server, data in (\S+)\)/.exec(text);
    expect(pgUrl?.[2]).toBe(join(dir, "postgres"));
    expect(redisUrl?.[2]).toBe(join(dir, "redis"));
    expect(existsSync(join(dir, "postgres", "PG_VERSION"))).toBe(true);
    expect(new URL(pgUrl![1]!).port).not.toBe(String(closedPg));
    expect(new URL(redisUrl![1]!).port).not.toBe(String(closedRedis));
    // The printed URLs work as printed, and the database is migrated.
    const sql = postgres(pgUrl![1]!, { max: 1, onnotice: () => {} });
    expect(await sql`select current_database() as db, (select count(*) from alerts)::int as alerts`).toEqual([
      { db: "conveyor", alerts: 0 },
    ]);
    await sql.end();
    expect(await redisAnswers(redisUrl![1]!)).toBe(true);

    await alertRoundTrip(port, printedAdminKey(p)!);

    p.child.kill("SIGTERM");
    expect(await p.waitForExit(30_000)).toEqual({ code: 0, signal: null });
    // Stopped with it, not left behind.
    expect(await postgresAnswers(pgUrl![1]!)).toBe(false);
    expect(await redisAnswers(redisUrl![1]!)).toBe(false);
    expect(existsSync(join(dir, "postgres", "postmaster.pid"))).toBe(false);
  }, 120_000);

  it("says how to get Redis when none answers and there is no redis-server to start", async () => {
    const emptyPath = await dataDir();
    const p = startProcess("start-all", "dev/start.ts", {
      PATH: emptyPath,
      PORT: String(await freePort()),
      DATABASE_URL: env.TEST_PG_URL,
      DEV_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      DEV_DATA_DIR: await dataDir(),
    });
    expect(await p.waitForExit(30_000)).toEqual({ code: 69, signal: null });
    expect(p.stderr()).toContain("no redis-server on PATH");
    expect(p.stderr()).toContain("apt-get install redis-server");
    expect(p.stderr()).toContain("REDIS_URL");
  }, 60_000);

  it("refuses to replace a Postgres that answers but rejects the login", async () => {
    const url = new URL(env.TEST_PG_URL);
    url.username = `no_such_role_${randomBytes(4).toString("hex")}`;
    url.pathname = "/conveyor";
    const p = startProcess("start-all", "dev/start.ts", {
      PORT: String(await freePort()),
      REDIS_URL: env.TEST_REDIS_URL,
      DEV_POSTGRES_URL: url.toString(),
      DEV_DATA_DIR: await dataDir(),
    });
    expect(await p.waitForExit(30_000)).toEqual({ code: 69, signal: null });
    expect(p.stderr()).toContain("refused the connection");
    expect(p.stderr()).toContain("Set DATABASE_URL");
  }, 60_000);
});

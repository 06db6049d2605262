import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:net";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { loadTestEnv } from "../lib/config.js";
import { databaseUrl } from "../test/helpers/database.js";
import { freePort } from "../test/helpers/processes.js";
import { ensureDatabase, probePostgres } from "./postgres.js";
import { probeRedis } from "./redis.js";
import { formatStartBanner } from "./services.js";

const env = loadTestEnv();
const admin = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
afterAll(() => admin.end());

/** A TCP server that answers every connection with bytes that are neither Postgres nor Redis. */
async function notADatabase(): Promise<{ port: number; server: Server }> {
  const server = createServer((socket) => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { port: address.port, server };
}

describe("ensureDatabase", () => {
  it("creates a missing database exactly once when several starts race for it", async () => {
    const name = `conveyor_race_${randomBytes(6).toString("hex")}`;
    const url = databaseUrl(env.TEST_PG_URL, name);
    try {
      const created = await Promise.all(Array.from({ length: 6 }, () => ensureDatabase(url)));
      expect(created.filter(Boolean)).toHaveLength(1);
      expect(await admin`select 1 from pg_database where datname = ${name}`).toHaveLength(1);
      expect(await ensureDatabase(url)).toBe(false);
    } finally {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
    }
  });
});

describe("probes", () => {
  it("tell a server that answers from nothing, something else, and a server that refuses us", async () => {
    const closed = await freePort();
    const other = await notADatabase();
    try {
      expect(await probePostgres(env.TEST_PG_URL)).toEqual({ state: "ok" });
      expect((await probePostgres(`postgres://postgres@127.0.0.1:${closed}/x`)).state).toBe("absent");
      expect((await probePostgres(`postgres://postgres@127.0.0.1:${other.port}/x`)).state).toBe("absent");
      const stranger = new URL(env.TEST_PG_URL);
      stranger.username = `no_such_role_${randomBytes(4).toString("hex")}`;
      expect((await probePostgres(stranger.toString())).state).toBe("refused");

      expect(await probeRedis(env.TEST_REDIS_URL)).toEqual({ state: "ok" });
      expect((await probeRedis(`redis://127.0.0.1:${closed}`)).state).toBe("absent");
      expect((await probeRedis(`redis://127.0.0.1:${other.port}`)).state).toBe("absent");
      const wrongPassword = new URL(env.TEST_REDIS_URL);
      wrongPassword.username = `no-such-user-${randomBytes(4).toString("hex")}`;
      wrongPassword.password = "nope";
      expect((await probeRedis(wrongPassword.toString())).state).toBe("refused");
    } finally {
      other.server.close();
    }
  });
});

describe("formatStartBanner", () => {
  it("masks the password of a configured server, and shows the dev one of an embedded server", () => {
    const text = formatStartBanner({
      baseUrl: "http://localhost:3000",
      services: {
        postgres: { url: "postgres://app:s3cret@db:5432/conveyor", origin: "DATABASE_URL" },
        redis: { url: "redis://127.0.0.1:6380", origin: "private redis-server", ours: true },
      },
      workers: [{ queue: "alert-ingestion", concurrency: 256 }],
      dashboards: { enabled: true, user: "admin", generatedPassword: "pw-0123456789abcdef" },
      bootstrapAdminKey: "cvy_bootstrapkey",
      anonymousAccess: ["secrets", "files"],
    });
    expect(text).not.toContain("s3cret");
    expect(text).toContain("postgres://app:***@db:5432/conveyor");
    expect(text).toContain("admin / pw-0123456789abcdef");
    expect(text).toContain("http://localhost:3000/admin/queues");
    expect(text).toContain("cvy_bootstrapkey");
    expect(text).toContain("ON for secrets, files");
  });
});

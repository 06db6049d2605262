// Usage as its clients and admins use it, on real Postgres, Redis and workers: registration,
// hits logged one at a time and in batches and counted exactly once, daily usage zero-filled,
// the top clients, tokens, per-client rate limits, bad input, and the day partitions of api_hits.
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareEventIds } from "../../domains/usage/events.js";
import { createDayPartitions, utcDay } from "../../domains/usage/queries.js";
import { addressList } from "../../lib/cidr.js";
import { logBatchingQueue } from "../../queues/log-batching.js";
import {
  createTestContext,
  eventually,
  type TestAccount,
  type TestContext,
} from "../../test/helpers/context.js";
import { createTestDatabase, type TestDatabase } from "../../test/helpers/database.js";
import { readEvents, type SseEvent } from "../../test/helpers/http.js";
import { type RedisServer, startRedisServer } from "../../test/helpers/redis-server.js";
import { startTcpProxy, type TcpProxy } from "../../test/helpers/tcp-proxy.js";
import type { RunningWorkers } from "../../workers/runtime.js";
import { createApp } from "../app.js";

type ErrorJson = { error: { code: string; message: string } };
interface Registered {
  client_id: string;
  name: string;
  email: string;
  api_key: string;
}
interface Daily {
  days: number;
  clients: { client_id: string; daily: { date: string; requests: number }[] }[];
}

const DAY_MS = 86_400_000;
const today = () => new Date(utcDay(Date.now())).toISOString().slice(0, 10);

let t: TestContext;
let admin: TestAccount;
beforeAll(async () => {
  t = await createTestContext();
  t.startWorkers({ WORKER_QUEUES: "log-batching" });
  admin = await t.account("admin");
});
afterAll(() => t.close());

const post = (path: string, body: unknown, headers: Record<string, string> = {}, ctx = t) =>
  ctx.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
const get = (path: string, headers: Record<string, string> = {}, ctx = t) =>
  ctx.app.request(path, { headers });

async function register(
  ctx = t,
  extra: Record<string, string> = {},
): Promise<Registered & { headers: Record<string, string> }> {
  const res = await post(
    "/api/register",
    { name: "Acme", email: `ops-${randomUUID()}@acme.example`, ...extra },
    {},
    ctx,
  );
  expect(res.status, await res.clone().text()).toBe(201);
  const made = (await res.json()) as Registered;
  return { ...made, headers: { "x-api-key": made.api_key } };
}

/** Waits until the client's count for today reaches `expected`; answers the last count seen. */
async function todayCount(headers: Record<string, string>, expected: number, ctx = t): Promise<number> {
  let last = -1;
  await eventually(async () => {
    const daily = (await (await get("/api/usage/daily", headers, ctx)).json()) as Daily;
    last = daily.clients[0]?.daily.find((d) => d.date === today())?.requests ?? 0;
    return last >= expected ? true : undefined;
  }, 15_000).catch(() => {});
  return last;
}

const hit = (i = 0) => ({ ip: "203.0.113.7", endpoint: `/v2/orders/${i}`, method: "get", status: 200 });

describe("POST /api/register", () => {
  it("makes a client with an API key shown once; its e-mail and client_id are unique", async () => {
    const clientId = `acme-${randomUUID().slice(0, 8)}`;
    const made = await register(t, { client_id: clientId });
    expect(made).toMatchObject({ client_id: clientId, name: "Acme" });
    expect(made.api_key).toMatch(/^cvy_/);
    expect(await (await get("/v1/accounts/me", made.headers)).json()).toMatchObject({ role: "client" });

    const sameId = await post("/api/register", {
      name: "B",
      email: `b-${randomUUID()}@x.example`,
      client_id: clientId,
    });
    expect(sameId.status).toBe(409);
    const sameEmail = await post("/api/register", { name: "C", email: made.email.toUpperCase() });
    expect(sameEmail.status).toBe(409);
    expect(((await sameEmail.json()) as ErrorJson).error.code).toBe("CONFLICT");
  });

  it("refuses bad input with 400 and the error body", async () => {
    for (const body of [
      {},
      { name: "x" },
      { name: "x", email: "not-an-address" },
      { name: "", email: "a@b.example" },
      { name: "x", email: "a@b.example", client_id: "has space" },
      { name: "x", email: "a@b.example", client_id: "'; drop table usage_clients; --" },
    ]) {
      const res = await post("/api/register", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as ErrorJson).error.code).toBe("VALIDATION_FAILED");
    }
  });

  it("stores SQL metacharacters in every text field as text, and refuses them where a field allows none", async () => {
    const name = `O'Brien"; drop table accounts; --`;
    const res = await post("/api/register", { name, email: `o'brien+${randomUUID().slice(0, 8)}@x.example` });
    expect(res.status).toBe(201);
    const made = (await res.json()) as Registered;
    expect(made.name).toBe(name);
    expect(await (await get("/v1/accounts/me", { "x-api-key": made.api_key })).json()).toMatchObject({
      name,
    });
    for (const path of [
      "/api/usage/daily?client_id=x'%20or%201=1--",
      "/api/clients/x'%3Bdrop%20table%20usage_clients",
      "/api/clients?after=%27%20or%20%271%27=%271",
    ])
      expect((await get(path, admin.headers)).status, path).toBe(400);
  });

  it("limits registrations per address", async () => {
    const limited = await createTestContext({ USAGE_REGISTRATIONS_PER_ADDRESS_PER_HOUR: "2" });
    try {
      const from = (address: string) => ({ server: { incoming: { socket: { remoteAddress: address } } } });
      const attempt = (address: string) =>
        limited.app.request(
          "/api/register",
          {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ name: "x", email: `r-${randomUUID()}@x.example` }),
          },
          from(address),
        );
      expect((await attempt("192.0.2.50")).status).toBe(201);
      expect((await attempt("192.0.2.50")).status).toBe(201);
      const refused = await attempt("192.0.2.50");
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
      expect((await attempt("192.0.2.51")).status).toBe(201);
    } finally {
      await limited.close();
    }
  });

  it("needs REGISTRATION_TOKEN when it is set", async () => {
    const token = "a-registration-token-of-ours";
    const app = createApp({ ...t.deps, config: { ...t.deps.config, REGISTRATION_TOKEN: token } });
    const body = JSON.stringify({ name: "x", email: `t-${randomUUID()}@x.example` });
    const send = (headers: Record<string, string>) =>
      app.request("/api/register", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
      });
    expect((await send({})).status).toBe(401);
    expect((await send({ authorization: "Bearer wrong-token-wrong-token" })).status).toBe(401);
    expect((await send({ authorization: `Bearer ${token}` })).status).toBe(201);
  });
});

describe("POST /api/logs and the counts", () => {
  it("accepts one hit and a batch with 202, and counts each hit once", async () => {
    const client = await register();
    const one = await post("/api/logs", hit(), client.headers);
    expect(one.status).toBe(202);
    expect(await one.json()).toEqual({ accepted: 1 });
    const batch = await post(
      "/api/logs",
      { hits: Array.from({ length: 250 }, (_, i) => hit(i)) },
      client.headers,
    );
    expect(await batch.json()).toEqual({ accepted: 250 });
    expect(await todayCount(client.headers, 251)).toBe(251);

    const daily = (await (await get("/api/usage/daily", client.headers)).json()) as Daily;
    expect(daily.days).toBe(7);
    expect(daily.clients).toHaveLength(1);
    const days = daily.clients[0]?.daily ?? [];
    expect(days).toHaveLength(7);
    expect(days.at(-1)).toEqual({ date: today(), requests: 251 });
    expect(days.slice(0, 6).every((d) => d.requests === 0)).toBe(true);
    expect(new Set(days.map((d) => d.date)).size).toBe(7);
  });

  it("counts a batch delivered twice once (at-least-once delivery)", async () => {
    const client = await register();
    const me = (await (await get("/v1/accounts/me", client.headers)).json()) as { id: string };
    const hits = Array.from({ length: 20 }, (_, i) => ({
      id: `dup-${randomUUID()}-${i}`,
      accountId: me.id,
      at: Date.now(),
      ip: "198.51.100.1",
      endpoint: "/twice",
    }));
    const queue = t.deps.queues.get(logBatchingQueue.name);
    await queue.add("usage.logHits", { hits });
    await queue.add("usage.logHits", { hits });
    await eventually(async () => ((await queue.getCompletedCount()) >= 2 ? true : undefined));
    await post("/api/logs", hit(), client.headers);
    expect(await todayCount(client.headers, 21)).toBe(21);
    // And no more, once everything has run.
    await new Promise((r) => setTimeout(r, 500));
    expect(await todayCount(client.headers, 21)).toBe(21);
  });

  it("counts 1,000 concurrent hits from ten clients exactly", async () => {
    const clients = await Promise.all(Array.from({ length: 10 }, () => register()));
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        post("/api/logs", hit(i), (clients[i % 10] as { headers: Record<string, string> }).headers),
      ),
    ).then((answers) => expect(answers.every((a) => a.status === 202)).toBe(true));
    for (const c of clients) expect(await todayCount(c.headers, 100)).toBe(100);
  }, 60_000);

  it("stores SQL metacharacters as text, and refuses bad hits with 400", async () => {
    const client = await register();
    const sneaky = { ip: "::1", endpoint: "/x'; drop table api_hits; --", method: "POST", status: 500 };
    expect((await post("/api/logs", sneaky, client.headers)).status).toBe(202);
    expect(await todayCount(client.headers, 1)).toBe(1);
    const [row] = await t.deps.database.sql`select endpoint from api_hits where endpoint like '%drop table%'`;
    expect(row?.endpoint).toBe(sneaky.endpoint);

    for (const body of [
      {},
      { ip: "999.1.1.1", endpoint: "/x" },
      { ip: "203.0.113.7" },
      { ip: "203.0.113.7", endpoint: "" },
      { ip: "203.0.113.7", endpoint: "/x", status: 42 },
      { ip: "203.0.113.7", endpoint: "/x", timestamp: "yesterday" },
      { ip: "203.0.113.7", endpoint: "/x", timestamp: new Date(Date.now() - 400 * DAY_MS).toISOString() },
      { ip: "203.0.113.7", endpoint: "/x", timestamp: Date.now() + DAY_MS },
      { hits: [] },
      { hits: Array.from({ length: 1001 }, (_, i) => hit(i)) },
    ]) {
      const res = await post("/api/logs", body, client.headers);
      expect(res.status, JSON.stringify(body).slice(0, 100)).toBe(400);
      expect(((await res.json()) as ErrorJson).error.code).toBe("VALIDATION_FAILED");
    }
  });

  it("takes hits from clients only", async () => {
    expect((await post("/api/logs", hit())).status).toBe(401);
    expect((await post("/api/logs", hit(), admin.headers)).status).toBe(403);
  });
});

describe("reads", () => {
  // A context of its own: the top three are counted over every client of the database.
  let r: TestContext;
  let rAdmin: TestAccount;
  beforeAll(async () => {
    r = await createTestContext();
    r.startWorkers({ WORKER_QUEUES: "log-batching" });
    rAdmin = await r.account("admin");
  });
  afterAll(() => r.close());

  it("shows a client itself only; admins see every client or one; the top three by requests", async () => {
    const [a, b, c, d] = await Promise.all([register(r), register(r), register(r), register(r)]);
    const counts: [typeof a, number][] = [
      [a, 5],
      [b, 9],
      [c, 7],
      [d, 1],
    ];
    for (const [client, n] of counts)
      expect(
        (await post("/api/logs", { hits: Array.from({ length: n }, (_, i) => hit(i)) }, client.headers, r))
          .status,
      ).toBe(202);
    for (const [client, n] of counts) expect(await todayCount(client.headers, n, r)).toBe(n);

    expect((await get(`/api/usage/daily?client_id=${b.client_id}`, a.headers, r)).status).toBe(403);
    const all = (await (await get("/api/usage/daily", rAdmin.headers, r)).json()) as Daily;
    expect(all.clients.map((x) => x.client_id).sort()).toEqual([a, b, c, d].map((x) => x.client_id).sort());
    const one = (await (
      await get(`/api/usage/daily?client_id=${c.client_id}`, rAdmin.headers, r)
    ).json()) as Daily;
    expect(one.clients.map((x) => x.client_id)).toEqual([c.client_id]);
    expect(one.clients[0]?.daily.at(-1)).toEqual({ date: today(), requests: 7 });
    expect((await get("/api/usage/daily?client_id=nobody-here", rAdmin.headers, r)).status).toBe(404);

    expect((await get("/api/usage/top", a.headers, r)).status).toBe(403);
    // The live counters follow each commit by a moment (they are added right after it).
    const expected = JSON.stringify([b.client_id, c.client_id, a.client_id]);
    const top = await eventually(async () => {
      const answer = (await (await get("/api/usage/top", rAdmin.headers, r)).json()) as {
        clients: { client_id: string }[];
      };
      return JSON.stringify(answer.clients.map((x) => x.client_id)) === expected ? answer : undefined;
    });
    expect(top).toEqual({
      window_hours: 24,
      clients: [
        { client_id: b.client_id, requests: 9 },
        { client_id: c.client_id, requests: 7 },
        { client_id: a.client_id, requests: 5 },
      ],
    });
    // Rebuilt from Postgres (the maintenance job), the same.
    await r.deps.services.usage.maintain(r.logger);
    expect(await (await get("/api/usage/top", rAdmin.headers, r)).json()).toEqual(top);
  });

  it("exchanges a key for a token at POST /api/token, and reads with it", async () => {
    const client = await register();
    const res = await post("/api/token", {}, client.headers);
    expect(res.status).toBe(200);
    const { access_token } = (await res.json()) as { access_token: string };
    const daily = await get("/api/usage/daily", { authorization: `Bearer ${access_token}` });
    expect(daily.status).toBe(200);
    expect(((await daily.json()) as Daily).clients[0]?.client_id).toBe(client.client_id);
    expect((await get("/api/usage/daily", { authorization: `Bearer ${access_token}x` })).status).toBe(401);
  });
});

const usageEvents = (events: SseEvent[]) =>
  events
    .filter((e) => e.event === "usage")
    .map((e) => ({
      id: e.id as string,
      hits: (JSON.parse(e.data) as { hits: { client_id: string; added: number }[] }).hits,
    }));
const addedFor = (events: SseEvent[], clientId: string) =>
  usageEvents(events)
    .flatMap((e) => e.hits)
    .filter((h) => h.client_id === clientId)
    .reduce((sum, h) => sum + h.added, 0);

describe("GET /api/usage/stream", () => {
  it("streams a client its own committed hits, an admin everyone's, and resumes from Last-Event-ID", async () => {
    const [a, b] = [await register(), await register()];
    const streamOf = (headers: Record<string, string>) => get("/api/usage/stream", headers);
    const ofA = await streamOf(a.headers);
    const ofAdmin = await streamOf(admin.headers);
    expect(ofA.status).toBe(200);
    const logged = (async () => {
      // Once both streams are open (their first event is written at once).
      await new Promise((r) => setTimeout(r, 200));
      await post("/api/logs", { hits: [hit(1), hit(2), hit(3)] }, a.headers);
      await post("/api/logs", { hits: [hit(4), hit(5)] }, b.headers);
    })();
    const [seenByA, seenByAdmin] = await Promise.all([
      readEvents(ofA, (events) => addedFor(events, a.client_id) >= 3),
      readEvents(
        ofAdmin,
        (events) => addedFor(events, a.client_id) >= 3 && addedFor(events, b.client_id) >= 2,
      ),
    ]);
    await logged;
    expect(seenByA[0]?.event).toBe("ready");
    expect(addedFor(seenByA, a.client_id)).toBe(3);
    expect(usageEvents(seenByA).flatMap((e) => e.hits.map((h) => h.client_id))).not.toContain(b.client_id);
    expect(addedFor(seenByAdmin, b.client_id)).toBe(2);

    // Missed while away: replayed from the event log on reconnect, after the last id seen.
    const lastSeen = usageEvents(seenByA).at(-1)?.id as string;
    await post("/api/logs", { hits: [hit(6), hit(7)] }, a.headers);
    expect(await todayCount(a.headers, 5)).toBe(5);
    const resumed = await readEvents(
      await get("/api/usage/stream", { ...a.headers, "last-event-id": lastSeen }),
      (events) => addedFor(events, a.client_id) >= 2,
    );
    expect(addedFor(resumed, a.client_id)).toBe(2);
    expect(usageEvents(resumed).every((e) => compareEventIds(e.id, lastSeen) > 0)).toBe(true);

    expect((await get("/api/usage/stream", { ...a.headers, "last-event-id": "not-an-id" })).status).toBe(400);
    expect((await get("/api/usage/stream")).status).toBe(401);
  }, 30_000);
});

describe("cached reads", () => {
  it("serves a read from the cache until a commit counts its client, then computes it again", async () => {
    const client = await register();
    const read = async () => {
      const res = await get("/api/usage/daily", client.headers);
      const body = (await res.json()) as Daily;
      return { status: res.headers.get("cache-status"), today: body.clients[0]?.daily.at(-1)?.requests };
    };
    expect(await read()).toEqual({ status: "conveyor; fwd=miss", today: 0 });
    expect(await read()).toEqual({ status: "conveyor; hit", today: 0 });
    await post("/api/logs", hit(), client.headers);
    // The commit bumps the client's version: the next read after it is computed, and counts the hit.
    const fresh = await eventually(async () => {
      const r = await read();
      return r.today === 1 ? r : undefined;
    });
    expect(fresh.status).toBe("conveyor; fwd=miss");
    expect(await read()).toEqual({ status: "conveyor; hit", today: 1 });
    expect((await get("/api/usage/top", admin.headers)).headers.get("cache-status")).toBe("conveyor; hit");
  });
});

describe("reads while Redis or Postgres is down", () => {
  let redis: RedisServer;
  let proxy: TcpProxy;
  let db: TestDatabase;
  let o: TestContext;
  let workers: RunningWorkers;
  beforeAll(async () => {
    redis = await startRedisServer(["--save", "", "--appendonly", "yes"]);
    db = await createTestDatabase();
    const direct = new URL(db.url);
    proxy = await startTcpProxy(Number(direct.port || 5432));
    direct.host = `127.0.0.1:${proxy.port}`;
    // Postgres through a proxy the test can cut; a Redis of its own it can stop.
    o = await createTestContext({ REDIS_URL: redis.url, DATABASE_URL: direct.toString() });
    workers = o.startWorkers({ WORKER_QUEUES: "log-batching" });
  });
  afterAll(async () => {
    if (!redis.running) await redis.start();
    await proxy?.restore();
    await o?.close();
    await proxy?.close();
    await db?.drop();
    await redis.remove();
  });

  it("serves the last answer with its Age while Postgres is down, and Postgres behind an LRU while Redis is", async () => {
    const client = await register(o);
    const oAdmin = await o.account("admin");
    await post("/api/logs", { hits: [hit(1), hit(2), hit(3)] }, client.headers, o);
    expect(await todayCount(client.headers, 3, o)).toBe(3);
    const read = async (path: string, headers: Record<string, string>) => {
      const res = await get(path, headers, o);
      return {
        http: res.status,
        cache: res.headers.get("cache-status"),
        age: res.headers.get("age"),
        body: await res.json(),
      };
    };
    const before = await read("/api/usage/daily", client.headers);
    // Once the live counters hold the batch too (they follow its commit by a moment).
    const topBefore = await eventually(async () => {
      const answer = await read("/api/usage/top", oAdmin.headers);
      const clients = (answer.body as { clients: { requests: number }[] }).clients;
      return clients[0]?.requests === 3 ? answer : undefined;
    });

    // Postgres down, and the client's answer outdated (as a commit would make it).
    await o.deps.redis.incr(
      `${o.prefix}:usage:v:${(await o.deps.services.usage.clientById(client.client_id))?.accountId}`,
    );
    await proxy.cut();
    try {
      const stale = await read("/api/usage/daily", client.headers);
      expect(stale).toMatchObject({ http: 200, cache: "conveyor; hit; detail=stale", body: before.body });
      expect(Number(stale.age)).toBeGreaterThanOrEqual(0);
      // The top clients need no database at all.
      expect(await read("/api/usage/top", oAdmin.headers)).toMatchObject({
        http: 200,
        cache: "conveyor; hit",
        body: topBefore.body,
      });
    } finally {
      await proxy.restore();
    }

    // Reads only from here: the workers stop before Redis does (a BullMQ worker that lived through
    // a Redis restart can take its whole shutdown deadline to close).
    await workers.close();
    await redis.stop();
    try {
      const first = await read("/api/usage/daily", client.headers);
      expect(first).toMatchObject({ http: 200, cache: "conveyor; fwd=miss", body: before.body });
      expect(await read("/api/usage/daily", client.headers)).toMatchObject({
        http: 200,
        cache: "conveyor; hit; detail=memory",
      });
      const top = await read("/api/usage/top", oAdmin.headers);
      expect(top).toMatchObject({ http: 200, cache: "conveyor; fwd=miss", body: topBefore.body });
    } finally {
      await redis.start();
    }
  }, 60_000);
});

describe("clients: listing, IP allowlists, own limits, trusted proxies", () => {
  const from = (address: string) => ({ server: { incoming: { socket: { remoteAddress: address } } } });

  it("lets a client restrict its key to its addresses, and an admin set its limits", async () => {
    const client = await register();
    const other = await register();
    const me = (await (await get(`/api/clients/${client.client_id}`, client.headers)).json()) as {
      ip_allowlist: string[];
      limits: { reads: { limit: number }[] };
    };
    expect(me.ip_allowlist).toEqual([]);
    expect(me.limits.reads.map((w) => w.limit)).toEqual([100, 1000]);
    expect((await get(`/api/clients/${other.client_id}`, client.headers)).status).toBe(404);
    const listed = (await (await get("/api/clients", client.headers)).json()) as {
      items: { client_id: string }[];
    };
    expect(listed.items.map((i) => i.client_id)).toEqual([client.client_id]);

    const patch = (body: unknown, headers: Record<string, string>, clientId = client.client_id) =>
      t.app.request(`/api/clients/${clientId}`, {
        method: "PATCH",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    expect((await patch({ ip_allowlist: ["203.0.113.0/24"] }, client.headers)).status).toBe(200);
    const read = (address: string) =>
      t.app.request("/api/usage/daily", { headers: client.headers }, from(address));
    expect((await read("203.0.113.50")).status).toBe(200);
    const refused = await read("198.51.100.9");
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as ErrorJson).error.message).toMatch(/allowlist/);
    expect(
      (
        await t.app.request(
          "/api/logs",
          {
            method: "POST",
            headers: { "content-type": "application/json", ...client.headers },
            body: JSON.stringify(hit()),
          },
          from("198.51.100.9"),
        )
      ).status,
    ).toBe(403);

    // Bad entries and a client setting its own limits are refused.
    expect((await patch({ ip_allowlist: ["203.0.113.0/33"] }, client.headers)).status).toBe(400);
    expect((await patch({ limits: { reads_per_minute: 100000 } }, client.headers)).status).toBe(403);
    // The client has made several requests this minute: a limit of 2 refuses the next at once,
    // and the default (null) lets it in again: a changed limit keeps the client's count.
    const set = await patch({ limits: { reads_per_minute: 2 }, ip_allowlist: [] }, admin.headers);
    expect(set.status).toBe(200);
    expect(((await set.json()) as { limits: { reads: { limit: number }[] } }).limits.reads[0]?.limit).toBe(2);
    const limited = await read("198.51.100.9");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("ratelimit-policy")).toBe('"client-reads";q=2;w=60');
    expect((await patch({ limits: { reads_per_minute: null } }, admin.headers)).status).toBe(200);
    expect((await read("198.51.100.9")).status).toBe(200);
    expect((await patch({ ip_allowlist: [] }, admin.headers, "no-such-client")).status).toBe(404);
  });

  it("believes X-Forwarded-For only from TRUSTED_PROXIES, and keeps admins to ADMIN_IP_ALLOWLIST", async () => {
    const client = await register();
    const patched = await t.app.request(`/api/clients/${client.client_id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json", ...client.headers },
      body: JSON.stringify({ ip_allowlist: ["203.0.113.7"] }),
    });
    expect(patched.status).toBe(200);
    const config = t.deps.config;
    const behindProxy = createApp({
      ...t.deps,
      config: {
        ...config,
        TRUSTED_PROXIES: addressList(["10.0.0.0/8"]),
        ADMIN_IP_ALLOWLIST: addressList(["192.0.2.10"]),
      },
    });
    const daily = (peerAddress: string, forwarded?: string, headers = client.headers) =>
      behindProxy.request(
        "/api/usage/daily",
        { headers: { ...headers, ...(forwarded ? { "x-forwarded-for": forwarded } : {}) } },
        from(peerAddress),
      );
    // Through the trusted proxy: the client's address is the one the proxy saw.
    expect((await daily("10.1.2.3", "198.51.100.1, 203.0.113.7")).status).toBe(200);
    expect((await daily("10.1.2.3", "203.0.113.7, 198.51.100.1")).status).toBe(403);
    // From anywhere else, the header is the caller's own say: not believed.
    expect((await daily("198.51.100.2", "203.0.113.7")).status).toBe(403);
    // Admins from their allowlist only.
    expect((await daily("192.0.2.10", undefined, admin.headers)).status).toBe(200);
    const refused = await daily("192.0.2.11", undefined, admin.headers);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as ErrorJson).error.message).toMatch(/ADMIN_IP_ALLOWLIST/);
  });
});

describe("the spool while Redis is down", () => {
  let redis: RedisServer;
  let s: TestContext;
  let spoolDir: string;
  beforeAll(async () => {
    redis = await startRedisServer(["--save", "", "--appendonly", "yes"]);
    spoolDir = await mkdtemp(join(tmpdir(), "conveyor-spool-"));
    s = await createTestContext({ REDIS_URL: redis.url, USAGE_SPOOL_DIR: spoolDir });
  });
  afterAll(async () => {
    if (!redis.running) await redis.start();
    await s?.close();
    await redis.remove();
    await rm(spoolDir, { recursive: true, force: true });
  });

  it("acknowledges hits into the spool, replays them when Redis is back, and counts each once", async () => {
    const client = await register(s);
    const me = (await (await get("/v1/accounts/me", client.headers, s)).json()) as { id: string };
    // Known to the API before the outage: the key, and the client's settings.
    expect((await post("/api/logs", hit(), client.headers, s)).status).toBe(202);

    await redis.stop();
    let spooled = 0;
    try {
      for (let i = 0; i < 5; i++) {
        const res = await post(
          "/api/logs",
          { hits: Array.from({ length: 10 }, (_, j) => hit(j)) },
          client.headers,
          s,
        );
        expect(res.status).toBe(202);
        spooled += Number(res.headers.get("x-usage-spooled"));
      }
      expect(spooled).toBe(50);
      expect((await readdir(spoolDir)).some((f) => f.endsWith(".jsonl"))).toBe(true);
      expect(await (await s.app.request("/metrics")).text()).toMatch(/^conveyor_usage_spooled_hits 50$/m);
    } finally {
      await redis.start();
    }

    // A file another process left behind a minute ago (it died), holding one new hit and one the
    // replay above will have counted already (a replay cut short, then taken up again).
    const orphan = join(spoolDir, "dead-process-0.jsonl");
    const fresh = {
      id: `orphan-${randomUUID()}`,
      accountId: me.id,
      at: Date.now(),
      ip: "192.0.2.1",
      endpoint: "/orphan",
    };
    await writeFile(orphan, `${JSON.stringify(fresh)}\n${JSON.stringify(fresh)}\n{"torn":`);
    const aMinuteAgo = new Date(Date.now() - 120_000);
    await utimes(orphan, aMinuteAgo, aMinuteAgo);

    const workers = s.startWorkers({ WORKER_QUEUES: "log-batching" });
    try {
      expect(await todayCount(client.headers, 52, s)).toBe(52);
      await eventually(async () => ((await readdir(spoolDir)).length === 0 ? true : undefined));
      expect(await (await s.app.request("/metrics")).text()).toMatch(/^conveyor_usage_spooled_hits 0$/m);
      await new Promise((r) => setTimeout(r, 500));
      expect(await todayCount(client.headers, 52, s)).toBe(52);
      const [{ n }] = (await s.deps.database
        .sql`select count(*)::int as n from api_hits where account_id = ${me.id}`) as [{ n: number }];
      expect(n).toBe(52);
    } finally {
      await workers.close();
    }
  }, 60_000);
});

describe("per-client rate limits", () => {
  let limited: TestContext;
  beforeAll(async () => {
    limited = await createTestContext({ USAGE_READS_PER_MINUTE: "3", USAGE_HITS_PER_MINUTE: "10" });
  });
  afterAll(() => limited.close());

  it("allows the limit's last request and refuses the next, with Retry-After and RateLimit headers", async () => {
    const client = await register(limited);
    for (let remaining = 2; remaining >= 0; remaining--) {
      const res = await get("/api/usage/daily", client.headers, limited);
      expect(res.status).toBe(200);
      expect(res.headers.get("ratelimit")).toMatch(new RegExp(`^"client-reads";r=${remaining};t=\\d+$`));
      expect(res.headers.get("ratelimit-policy")).toBe('"client-reads";q=3;w=60');
    }
    const refused = await get("/api/usage/daily", client.headers, limited);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refused.headers.get("ratelimit")).toMatch(/^"client-reads";r=0;t=\d+$/);
    // Another client has its own window.
    expect((await get("/api/usage/daily", (await register(limited)).headers, limited)).status).toBe(200);
    // The client hears of it, once for the window however often it is refused.
    await get("/api/usage/daily", client.headers, limited);
    type Inbox = { items: { type: string; data: { kind: string; retryAfterSeconds: number } }[] };
    const inbox = await eventually(async () => {
      // No worker here: the test relays the outbox itself.
      await limited.deps.services.notifications.relay();
      const i = (await (await get("/v1/notifications", client.headers, limited)).json()) as Inbox;
      return i.items.length > 0 ? i : undefined;
    });
    expect(inbox.items.map((n) => [n.type, n.data.kind])).toEqual([["usage.rate_limited", "reads"]]);
    expect(inbox.items[0]?.data.retryAfterSeconds).toBeGreaterThan(0);
  });

  it("warns a client once per window when it has used 80 % of an hourly limit", async () => {
    const quota = await createTestContext({ USAGE_READS_PER_HOUR: "10" });
    try {
      const client = await register(quota);
      type Inbox = { items: { type: string; data: Record<string, number | string> }[] };
      const inbox = async () => {
        await quota.deps.services.notifications.relay();
        return (await (await get("/v1/notifications", client.headers, quota)).json()) as Inbox;
      };
      for (let i = 0; i < 7; i++)
        expect((await get("/api/usage/daily", client.headers, quota)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 200));
      expect((await inbox()).items).toEqual([]);
      // The 8th read of 10 crosses 80 %; the 9th and 10th are in the same window.
      for (let i = 0; i < 3; i++)
        expect((await get("/api/usage/daily", client.headers, quota)).status).toBe(200);
      const warned = await eventually(async () => {
        const i = await inbox();
        return i.items.length > 0 ? i : undefined;
      });
      await new Promise((r) => setTimeout(r, 200));
      expect((await inbox()).items).toHaveLength(1);
      expect(warned.items[0]?.type).toBe("usage.quota_warning");
      expect(warned.items[0]?.data).toMatchObject({ kind: "reads", used: 8, limit: 10 });
    } finally {
      await quota.close();
    }
  });

  it("counts a batch's hits against the ingestion limit", async () => {
    const client = await register(limited);
    const send = (n: number) =>
      post("/api/logs", { hits: Array.from({ length: n }, (_, i) => hit(i)) }, client.headers, limited);
    expect((await send(10)).status).toBe(202);
    const refused = await send(1);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as ErrorJson).error.code).toBe("RATE_LIMITED");
    // Refused batches do not use up the hour: it holds the 10 accepted hits, however many were refused.
    for (let i = 0; i < 5; i++) expect((await send(100)).status).toBe(429);
    const me = (await (await get("/v1/accounts/me", client.headers, limited)).json()) as { id: string };
    const hour = await limited.deps.redis.get(`${limited.prefix}:usage:limit:hits:3600:${me.id}`);
    expect(Number(hour)).toBe(10);
  });
});

describe("day partitions of api_hits", () => {
  it("are made ahead, made on demand for a day without one, and dropped past the retention", async () => {
    const sql = t.deps.database.sql;
    const partitions = async () =>
      (
        await sql<{ name: string }[]>`
          select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
          join pg_class p on p.oid = i.inhparent where p.relname = 'api_hits' order by 1`
      ).map((r) => r.name);
    const name = (ms: number) => `api_hits_p${new Date(ms).toISOString().slice(0, 10).replace(/-/g, "")}`;
    const day = utcDay(Date.now());
    await createDayPartitions(sql, [day - 40 * DAY_MS]);
    expect(await partitions()).toContain(name(day - 40 * DAY_MS));

    await t.deps.services.usage.maintain(t.logger);
    const after = await partitions();
    expect(after).not.toContain(name(day - 40 * DAY_MS));
    for (let d = -29; d <= 3; d++) expect(after).toContain(name(day + d * DAY_MS));
    expect(after).not.toContain(name(day - 30 * DAY_MS));
  });
});

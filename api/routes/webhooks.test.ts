// Webhooks end to end on real Postgres, Redis and workers, with a real HTTP receiver: a
// notification arrives signed as Standard Webhooks says (checked with the `standardwebhooks`
// package), failures are retried under the same webhook-id, 410 disables the endpoint, a
// rotation signs with both secrets during its overlap, an account sees its own endpoints only,
// URLs that resolve to private or metadata addresses are refused, and no secret rests in clear.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forbiddenAddress } from "../../domains/notifications/webhook-address.js";
import { createWebhooksService } from "../../domains/notifications/webhooks.js";
import { notificationsQueue } from "../../queues/notifications.js";
import {
  createTestContext,
  eventually,
  type TestAccount,
  type TestContext,
} from "../../test/helpers/context.js";

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

interface Receiver {
  url: string;
  received: Received[];
  /** Most requests the receiver was answering at once. */
  maxConcurrent: () => number;
  close(): Promise<void>;
}

/** An HTTP receiver on 127.0.0.1 answering `statuses` in turn, then 200, each after `delayMs`. */
async function receiver(statuses: number[] = [], delayMs = 0): Promise<Receiver> {
  const received: Received[] = [];
  let current = 0;
  let max = 0;
  const server: Server = createServer((req, res) => {
    current++;
    max = Math.max(max, current);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      setTimeout(() => {
        current--;
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
        res.statusCode = statuses.shift() ?? 200;
        res.end("ok ".repeat(1_000));
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  receivers.push(server);
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    maxConcurrent: () => max,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
const receivers: Server[] = [];

interface Endpoint {
  id: string;
  url: string;
  types: string[];
  disabled: boolean;
  disabledReason: string | null;
  secret: string;
}
interface Delivery {
  id: string;
  type: string;
  state: string;
  attempts: number;
  lastStatus: number | null;
  history: { status: number | null; responseExcerpt: string | null }[];
}

let t: TestContext;
beforeAll(async () => {
  t = await createTestContext({
    WEBHOOKS_ALLOW_PRIVATE_ADDRESSES: "true",
    WEBHOOKS_RETRY_SCHEDULE: "1,1",
  });
  t.startWorkers({ WORKER_QUEUES: "notifications" });
});
afterAll(async () => {
  for (const s of receivers) s.closeAllConnections();
  await Promise.all(receivers.map((s) => new Promise((r) => s.close(r))));
  await t.close();
});

const call = (a: TestAccount, method: string, path: string, body?: unknown) =>
  t.app.request(path, {
    method,
    headers: { ...a.headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function register(a: TestAccount, url: string, types?: string[]): Promise<Endpoint> {
  const res = await call(a, "POST", "/v1/webhooks", { url, ...(types ? { types } : {}) });
  expect(res.status).toBe(201);
  return (await res.json()) as Endpoint;
}

const notify = (account: TestAccount, message: string) =>
  t.deps.database.sql.begin((tx) =>
    t.deps.services.notifications.notify(tx, {
      account: account.account.id,
      type: "test.ping",
      data: { message },
    }),
  );

const deliveriesOf = async (a: TestAccount, id: string) =>
  ((await (await call(a, "GET", `/v1/webhooks/${id}/deliveries`)).json()) as { items: Delivery[] }).items;

const arrived = (r: Receiver, n: number, timeoutMs = 10_000) =>
  eventually(async () => (r.received.length >= n ? r.received : undefined), timeoutMs);

describe("delivery", () => {
  it("delivers a notification to the account's endpoint, signed as Standard Webhooks verify", async () => {
    const a = await t.account("client");
    const r = await receiver();
    const endpoint = await register(a, r.url);
    expect(endpoint.id).toMatch(/^whep_/);
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);

    await notify(a, "hello over HTTP");
    const [got] = await arrived(r, 1);
    const msg = got as Received;
    expect(msg.headers["content-type"]).toBe("application/json");
    expect(msg.headers["webhook-id"]).toMatch(/^msg_/);
    const payload = new Webhook(endpoint.secret).verify(msg.body, msg.headers as Record<string, string>) as {
      type: string;
      timestamp: string;
      data: unknown;
    };
    expect(payload.type).toBe("test.ping");
    expect(payload.data).toEqual({ message: "hello over HTTP" });
    expect(Number.isNaN(Date.parse(payload.timestamp))).toBe(false);
    expect(() =>
      new Webhook(`whsec_${Buffer.alloc(24, 1).toString("base64")}`).verify(
        msg.body,
        msg.headers as Record<string, string>,
      ),
    ).toThrow();

    const [d] = await eventually(async () => {
      const items = await deliveriesOf(a, endpoint.id);
      return items[0]?.state === "succeeded" ? items : undefined;
    });
    expect(d?.id).toBe(msg.headers["webhook-id"]);
    expect(d?.attempts).toBe(1);
    expect(d?.history[0]?.status).toBe(200);
    expect(Buffer.byteLength(d?.history[0]?.responseExcerpt ?? "")).toBeLessThanOrEqual(1_024);
  });

  it("sends only the types an endpoint asked for", async () => {
    const a = await t.account("client");
    const r = await receiver();
    await register(a, r.url, ["key.revoked"]);
    const all = await receiver();
    await register(a, all.url);
    await notify(a, "not for the first");
    await arrived(all, 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.received).toHaveLength(0);
  });

  it("retries a failed delivery under the same webhook-id until it succeeds", async () => {
    const a = await t.account("client");
    const r = await receiver([500]);
    const endpoint = await register(a, r.url);
    await notify(a, "second time lucky");
    const [first, second] = await arrived(r, 2);
    expect(second?.headers["webhook-id"]).toBe(first?.headers["webhook-id"]);
    new Webhook(endpoint.secret).verify(second?.body ?? "", second?.headers as Record<string, string>);
    const [d] = await eventually(async () => {
      const items = await deliveriesOf(a, endpoint.id);
      return items[0]?.state === "succeeded" ? items : undefined;
    });
    expect(d?.attempts).toBe(2);
    expect(d?.history.map((h) => h.status)).toEqual([500, 200]);
  });

  it("gives up after the last attempt of the schedule: the delivery is dead", async () => {
    const a = await t.account("client");
    const r = await receiver([503, 503, 503]);
    const endpoint = await register(a, r.url);
    await notify(a, "never");
    const [d] = await eventually(async () => {
      const items = await deliveriesOf(a, endpoint.id);
      return items[0]?.state === "dead" ? items : undefined;
    });
    // WEBHOOKS_RETRY_SCHEDULE "1,1": three attempts in all.
    expect(d?.attempts).toBe(3);
    expect(r.received).toHaveLength(3);

    // A redrive sends it once more, under the same webhook-id (the receiver now answers 200).
    r.received.length = 0;
    const redrive = `/v1/webhooks/${endpoint.id}/deliveries/${d?.id}/redeliver`;
    expect((await call(a, "POST", redrive)).status).toBe(202);
    const [again] = await arrived(r, 1);
    expect(again?.headers["webhook-id"]).toBe(d?.id);
    const [done] = await eventually(async () => {
      const items = await deliveriesOf(a, endpoint.id);
      return items[0]?.state === "succeeded" ? items : undefined;
    });
    expect(done?.attempts).toBe(4);
    // Only a dead delivery is sent again.
    expect((await call(a, "POST", redrive)).status).toBe(409);
  });

  it("recovers every dead delivery since a time, once the receiver is back", async () => {
    const a = await t.account("client");
    const r = await receiver([503, 503, 503, 503, 503, 503]);
    const endpoint = await register(a, r.url);
    const since = new Date(Date.now() - 1000).toISOString();
    await notify(a, "lost one");
    await notify(a, "lost two");
    await eventually(async () => {
      const items = await deliveriesOf(a, endpoint.id);
      return items.length === 2 && items.every((d) => d.state === "dead") ? items : undefined;
    });
    r.received.length = 0;
    const res = await call(a, "POST", `/v1/webhooks/${endpoint.id}/recover`, { since });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ redriven: 2 });
    const got = await arrived(r, 2);
    expect(got.map((g) => JSON.parse(g.body).data.message).sort()).toEqual(["lost one", "lost two"]);
    for (const g of got) new Webhook(endpoint.secret).verify(g.body, g.headers as Record<string, string>);
    expect(
      (await call(a, "POST", `/v1/webhooks/${endpoint.id}/recover`, { since: "yesterday" })).status,
    ).toBe(400);
  });

  it("disables an endpoint failing continuously when one more delivery goes dead, and tells its owner", async () => {
    const a = await t.account("client");
    const r = await receiver([503, 503, 503]);
    const endpoint = await register(a, r.url);
    // An endpoint that has existed, without a success, for longer than the 5 days allowed.
    await t.deps.database.sql`
      update webhook_endpoints set created_at = now() - interval '6 days' where id = ${endpoint.id}`;
    await notify(a, "into the void");
    const after = await eventually(async () => {
      const e = (await (await call(a, "GET", `/v1/webhooks/${endpoint.id}`)).json()) as Endpoint;
      return e.disabled ? e : undefined;
    });
    expect(after.disabledReason).toMatch(/no delivery succeeded for 5 day/);
    const inbox = await eventually(async () => {
      const res = await call(a, "GET", "/v1/notifications");
      const { items } = (await res.json()) as { items: { type: string; data: { endpointId: string } }[] };
      return items.find((n) => n.type === "webhook.disabled");
    });
    expect(inbox.data.endpointId).toBe(endpoint.id);
  });

  it("disables an endpoint that answers 410 Gone", async () => {
    const a = await t.account("client");
    const r = await receiver([410]);
    const endpoint = await register(a, r.url);
    await notify(a, "gone");
    const after = await eventually(async () => {
      const e = (await (await call(a, "GET", `/v1/webhooks/${endpoint.id}`)).json()) as Endpoint;
      return e.disabled ? e : undefined;
    });
    expect(after.disabledReason).toMatch(/410/);
    expect((await deliveriesOf(a, endpoint.id))[0]?.state).toBe("dead");
    // Disabled: the next notification is not sent.
    await notify(a, "not sent");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(r.received).toHaveLength(1);
  });

  it("keeps at most 4 deliveries in flight per endpoint, and a slow endpoint does not hold up another", async () => {
    const [slowOwner, fastOwner] = [await t.account("client"), await t.account("client")];
    const slow = await receiver([], 1_500);
    const fast = await receiver();
    await register(slowOwner, slow.url);
    await register(fastOwner, fast.url);
    for (let i = 0; i < 8; i++) await notify(slowOwner, `slow ${i}`);
    await eventually(async () => (slow.maxConcurrent() > 0 ? true : undefined));
    const started = Date.now();
    await notify(fastOwner, "fast");
    await arrived(fast, 1);
    // Not behind the slow endpoint's queue: it arrived before the slow ones were all answered.
    expect(slow.received.length).toBeLessThan(8);
    expect(Date.now() - started).toBeLessThan(3_000);
    await arrived(slow, 8, 20_000);
    expect(slow.maxConcurrent()).toBeLessThanOrEqual(4);
    expect(slow.maxConcurrent()).toBeGreaterThan(1);
  }, 30_000);

  it("sends a test.ping on request", async () => {
    const a = await t.account("client");
    const r = await receiver();
    const endpoint = await register(a, r.url);
    const res = await call(a, "POST", `/v1/webhooks/${endpoint.id}/test`);
    expect(res.status).toBe(202);
    const { deliveryId } = (await res.json()) as { deliveryId: string };
    const [msg] = await arrived(r, 1);
    expect(msg?.headers["webhook-id"]).toBe(deliveryId);
    const payload = new Webhook(endpoint.secret).verify(
      msg?.body ?? "",
      msg?.headers as Record<string, string>,
    );
    expect(payload).toMatchObject({ type: "test.ping" });
  });

  it("signs with both secrets during a rotation's overlap, and each verifies", async () => {
    const a = await t.account("client");
    const r = await receiver();
    const endpoint = await register(a, r.url);
    const res = await call(a, "POST", `/v1/webhooks/${endpoint.id}/rotate-secret`, { overlapSeconds: 3_600 });
    expect(res.status).toBe(200);
    const rotated = (await res.json()) as Endpoint & { previousSecretExpiresAt: string | null };
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(endpoint.secret);
    expect(rotated.previousSecretExpiresAt).not.toBeNull();

    await notify(a, "rotated");
    const [msg] = await arrived(r, 1);
    const headers = msg?.headers as Record<string, string>;
    expect(headers["webhook-signature"]?.split(" ")).toHaveLength(2);
    for (const secret of [endpoint.secret, rotated.secret]) {
      // Each secret alone, as a receiver that knows only one of them checks.
      expect(new Webhook(secret).verify(msg?.body ?? "", headers)).toMatchObject({ type: "test.ping" });
    }

    // Without overlap, the old secret stops at once.
    const again = (await (
      await call(a, "POST", `/v1/webhooks/${endpoint.id}/rotate-secret`, { overlapSeconds: 0 })
    ).json()) as Endpoint;
    await notify(a, "rotated again");
    const [, second] = await arrived(r, 2);
    const h2 = second?.headers as Record<string, string>;
    expect(h2["webhook-signature"]?.split(" ")).toHaveLength(1);
    new Webhook(again.secret).verify(second?.body ?? "", h2);
    expect(() => new Webhook(rotated.secret).verify(second?.body ?? "", h2)).toThrow();
  });
});

describe("the retry schedule, on an injected clock", () => {
  // No worker here: the test runs each attempt itself, at the instant its clock says.
  let c: TestContext;
  beforeAll(async () => {
    c = await createTestContext({ WEBHOOKS_ALLOW_PRIVATE_ADDRESSES: "true" });
  });
  afterAll(() => c.close());

  it("waits 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h between attempts, signing each at its own time", async () => {
    let clock = new Date("2026-12-03T12:00:00.000Z");
    const webhooks = createWebhooksService(c.workerConfig, c.deps, { now: () => clock });
    const a = await c.account("client");
    const r = await receiver(Array.from({ length: 8 }, () => 500));
    const endpoint = (await webhooks.create(a.account.id, { url: r.url })) as Endpoint;
    const { deliveryId } = await webhooks.test(a.account.id, endpoint.id);
    const queue = c.deps.queues.get(notificationsQueue.name);

    const waits: number[] = [];
    for (let attempt = 1; attempt <= 8; attempt++) {
      const outcome = await webhooks.deliver(deliveryId, attempt);
      const [row] = (await c.deps.database.sql`
        select next_attempt_at as "nextAttemptAt" from webhook_deliveries where id = ${deliveryId}`) as [
        { nextAttemptAt: Date | null },
      ];
      // Signed at the attempt's instant: a receiver's 5-minute tolerance holds for a retry hours later.
      const sent = r.received.at(-1) as Received;
      expect(Number(sent.headers["webhook-timestamp"])).toBe(clock.getTime() / 1000);
      if (attempt === 8) {
        expect(outcome).toBe("dead");
        expect(row.nextAttemptAt).toBeNull();
        break;
      }
      expect(outcome).toBe("retrying");
      const wait = ((row.nextAttemptAt as Date).getTime() - clock.getTime()) / 1000;
      waits.push(wait);
      // The next attempt is a delayed job of that delay.
      const next = (await queue.getDelayed()).find(
        (j) => j.data.deliveryId === deliveryId && j.data.attempt === attempt + 1,
      );
      expect(next?.opts.delay).toBe(wait * 1000);
      clock = new Date(clock.getTime() + wait * 1000);
    }
    expect(waits).toEqual([5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]);
    expect(r.received.map((m) => m.headers["webhook-id"])).toEqual(Array(8).fill(deliveryId));
  });

  it("is verified within the receiver's timestamp tolerance only: a stale or replayed message is refused", async () => {
    let clock = new Date();
    const webhooks = createWebhooksService(c.workerConfig, c.deps, { now: () => clock });
    const a = await c.account("client");
    const r = await receiver();
    const endpoint = (await webhooks.create(a.account.id, { url: r.url })) as Endpoint & { secret: string };
    const verifier = new Webhook(endpoint.secret);
    const { deliveryId } = await webhooks.test(a.account.id, endpoint.id);
    expect(await webhooks.deliver(deliveryId, 1)).toBe("succeeded");
    const fresh = r.received[0] as Received;
    expect(() => verifier.verify(fresh.body, fresh.headers as Record<string, string>)).not.toThrow();

    // A message signed 10 minutes ago (a replay, or a clock far off) fails the 5-minute tolerance.
    clock = new Date(Date.now() - 10 * 60_000);
    const stale = await webhooks.test(a.account.id, endpoint.id);
    expect(await webhooks.deliver(stale.deliveryId, 1)).toBe("succeeded");
    const old = r.received[1] as Received;
    expect(() => verifier.verify(old.body, old.headers as Record<string, string>)).toThrow(/too old/i);
    // A changed timestamp breaks the signature.
    const forged = {
      ...(old.headers as Record<string, string>),
      "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
    };
    expect(() => verifier.verify(old.body, forged as Record<string, string>)).toThrow();
  });
});

describe("endpoints", () => {
  it("lists, changes, disables and deletes an account's own endpoints; another account gets 404", async () => {
    const owner = await t.account("client");
    const other = await t.account("admin");
    const r = await receiver();
    const endpoint = await register(owner, r.url);

    const listed = (await (await call(owner, "GET", "/v1/webhooks")).json()) as { items: Endpoint[] };
    expect(listed.items.map((e) => e.id)).toEqual([endpoint.id]);
    expect(listed.items[0]).not.toHaveProperty("secret");
    expect(
      ((await (await call(other, "GET", "/v1/webhooks")).json()) as { items: Endpoint[] }).items,
    ).toEqual([]);

    for (const [method, path, body] of [
      ["GET", `/v1/webhooks/${endpoint.id}`],
      ["PATCH", `/v1/webhooks/${endpoint.id}`, { disabled: true }],
      ["DELETE", `/v1/webhooks/${endpoint.id}`],
      ["POST", `/v1/webhooks/${endpoint.id}/rotate-secret`, {}],
      ["GET", `/v1/webhooks/${endpoint.id}/deliveries`],
      ["POST", `/v1/webhooks/${endpoint.id}/test`],
      ["POST", `/v1/webhooks/${endpoint.id}/deliveries/msg_x/redeliver`],
    ] as const) {
      const res = await call(other, method, path, body);
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    const still = (await (await call(owner, "GET", `/v1/webhooks/${endpoint.id}`)).json()) as Endpoint;
    expect(still.disabled).toBe(false);

    const patched = await call(owner, "PATCH", `/v1/webhooks/${endpoint.id}`, {
      types: ["key.revoked"],
      disabled: true,
    });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ types: ["key.revoked"], disabled: true });
    const enabled = await call(owner, "PATCH", `/v1/webhooks/${endpoint.id}`, { disabled: false });
    expect(await enabled.json()).toMatchObject({ disabled: false, disabledReason: null });

    expect((await call(owner, "DELETE", `/v1/webhooks/${endpoint.id}`)).status).toBe(204);
    expect((await call(owner, "GET", `/v1/webhooks/${endpoint.id}`)).status).toBe(404);
  });

  it("answers 400 to a malformed registration", async () => {
    const a = await t.account("client");
    for (const body of [
      {},
      { url: "not a url" },
      { url: "ftp://127.0.0.1/x" },
      { url: "http://user:pw@127.0.0.1/x" },
      { url: "http://127.0.0.1/x", types: ["no.such.type"] },
      { url: "http://127.0.0.1/x", extra: true },
    ]) {
      const res = await call(a, "POST", "/v1/webhooks", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await call(a, "GET", "/v1/webhooks/not-an-id")).status).toBe(400);
  });

  it("keeps secrets out of Postgres and Redis in clear", async () => {
    const a = await t.account("client");
    const r = await receiver();
    const endpoint = await register(a, r.url);
    await notify(a, "where is the secret");
    await arrived(r, 1);
    const raw = endpoint.secret.slice("whsec_".length);

    const rows = await t.deps.database
      .sql`select row_to_json(e)::text as row from webhook_endpoints e where id = ${endpoint.id}`;
    expect(rows[0]?.row).toBeDefined();
    expect(rows[0]?.row).not.toContain(raw);

    const jobs = await t.deps.queues
      .get(notificationsQueue.name)
      .getJobs(["completed", "waiting", "delayed", "active", "failed"]);
    const deliver = jobs.filter((j) => j.name === "notifications.deliver");
    expect(deliver.length).toBeGreaterThan(0);
    for (const job of jobs) {
      expect(JSON.stringify(job.data)).not.toContain(raw);
      expect(JSON.stringify(job.returnvalue ?? null)).not.toContain(raw);
    }
    for (const line of t.logs) expect(line).not.toContain(raw);
  });
});

describe("SSRF", () => {
  const resolve = async (host: string) =>
    host === "internal.example"
      ? ["10.0.0.1"]
      : host === "loopback.example"
        ? ["127.0.0.1"]
        : ["93.184.215.14"];
  const strict = () =>
    createWebhooksService({ ...t.workerConfig, WEBHOOKS_ALLOW_PRIVATE_ADDRESSES: false }, t.deps, {
      resolve,
    });

  it("refuses URLs that resolve to loopback, private, metadata or other non-public addresses", async () => {
    const a = await t.account("client");
    const webhooks = strict();
    for (const url of [
      "http://127.0.0.1/hooks",
      "http://localhost.:1/x".replace("localhost.", "127.0.0.2"),
      "http://169.254.169.254/latest/meta-data",
      "http://internal.example/hooks",
      "https://loopback.example/hooks",
      "http://[::1]/hooks",
      "http://[fd00:ec2::254]/",
      "http://[::ffff:10.1.2.3]/",
      "http://100.64.0.1/",
      "http://0.0.0.0/",
      "http://192.168.1.1/",
      "http://172.16.0.1/",
    ])
      await expect(webhooks.create(a.account.id, { url }), url).rejects.toMatchObject({
        code: "VALIDATION_FAILED",
      });
    await expect(
      webhooks.create(a.account.id, { url: "https://public.example/hooks" }),
    ).resolves.toMatchObject({
      url: "https://public.example/hooks",
    });
  });

  it("refuses cloud metadata even where private addresses are allowed, and http in production", async () => {
    const a = await t.account("client");
    const lax = createWebhooksService(t.workerConfig, t.deps, { resolve });
    await expect(lax.create(a.account.id, { url: "http://169.254.169.254/" })).rejects.toMatchObject({
      code: "VALIDATION_FAILED",
    });
    const production = createWebhooksService({ ...t.workerConfig, NODE_ENV: "production" }, t.deps, {
      resolve,
    });
    await expect(production.create(a.account.id, { url: "http://public.example/" })).rejects.toMatchObject({
      code: "VALIDATION_FAILED",
    });
  });

  it("checks the address again at delivery, and does not connect to a refused one", async () => {
    const a = await t.account("client");
    const r = await receiver();
    // Registered where private addresses are allowed; delivered by a worker where they are not.
    const endpoint = await register(a, r.url);
    const [d] = await t.deps.database.sql<{ id: string }[]>`
      insert into webhook_deliveries (id, endpoint_id, type, payload)
      values ('msg_ssrfcheck', ${endpoint.id}, 'test.ping', ${t.deps.database.sql.json({ type: "test.ping" })})
      returning id`;
    expect(await strict().deliver(d?.id as string, 1)).toBe("retrying");
    expect(r.received).toHaveLength(0);
    const [row] = await t.deps.database.sql<{ error: string }[]>`
      select error from webhook_attempts where delivery_id = 'msg_ssrfcheck'`;
    expect(row?.error).toMatch(/non-public/);
  });

  it("refuses a host that resolved to a public address at registration and to 127.0.0.1 at delivery (DNS rebinding)", async () => {
    const a = await t.account("client");
    let answer = "93.184.215.14";
    const rebinding = createWebhooksService(
      { ...t.workerConfig, WEBHOOKS_ALLOW_PRIVATE_ADDRESSES: false },
      t.deps,
      {
        resolve: async () => [answer],
      },
    );
    const endpoint = await rebinding.create(a.account.id, { url: "https://rebind.example/hooks" });
    answer = "127.0.0.1";
    // A delivery without a job: the workers of this file must not attempt it with their resolver.
    const deliveryId = "msg_rebinding";
    await t.deps.database.sql`
      insert into webhook_deliveries (id, endpoint_id, type, payload)
      values (${deliveryId}, ${endpoint.id}, 'test.ping', ${t.deps.database.sql.json({ type: "test.ping" })})`;
    expect(await rebinding.deliver(deliveryId, 1)).toBe("retrying");
    const [row] = await t.deps.database.sql<{ error: string }[]>`
      select error from webhook_attempts where delivery_id = ${deliveryId}`;
    expect(row?.error).toMatch(/non-public/);
  });

  it("classifies addresses", () => {
    for (const ip of [
      "127.0.0.1",
      "10.0.0.1",
      "172.31.255.255",
      "192.168.0.1",
      "169.254.1.1",
      "100.100.0.1",
      "0.0.0.0",
      "::1",
      "fe80::1",
      "fc00::1",
      "fd12::1",
      "::ffff:127.0.0.1",
    ])
      expect(forbiddenAddress(ip, false), ip).toBeDefined();
    for (const ip of ["93.184.215.14", "2606:4700::1111", "172.32.0.1", "100.128.0.1"])
      expect(forbiddenAddress(ip, false), ip).toBeUndefined();
    expect(forbiddenAddress("127.0.0.1", true)).toBeUndefined();
    expect(forbiddenAddress("169.254.169.254", true)).toBeDefined();
    expect(forbiddenAddress("fd00:ec2::254", true)).toBeDefined();
  });
});

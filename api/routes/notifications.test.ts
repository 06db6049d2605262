// Notifications end to end on real Postgres, Redis and workers: the outbox commits with the
// change or not at all, the relay loses nothing and enqueues each notification once, the inbox
// and the live stream show an account its own notifications only, and the identity domain
// notifies a key's owner when it is revoked.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { relayOutbox } from "../../domains/notifications/queries.js";
import { notificationsQueue } from "../../queues/notifications.js";
import {
  createTestContext,
  eventually,
  type TestAccount,
  type TestContext,
} from "../../test/helpers/context.js";

interface Inbox {
  items: { id: number; seq: number; type: string; data: unknown; read: boolean }[];
  nextBefore: number | null;
}

let t: TestContext;
let admin: TestAccount;
beforeAll(async () => {
  t = await createTestContext();
  t.startWorkers({ WORKER_QUEUES: "notifications" });
  admin = await t.account("admin");
});
afterAll(() => t.close());

const get = (path: string, headers: Record<string, string>) => t.app.request(path, { headers });
const inboxOf = async (a: TestAccount, query = "") =>
  (await (await get(`/v1/notifications${query}`, a.headers)).json()) as Inbox;

/** Notifies `account` in a transaction of its own, committed unless `rollback`. */
async function notifyInTransaction(account: string, message: string, rollback = false) {
  const notifications = t.deps.services.notifications;
  await t.deps.database.sql
    .begin(async (tx) => {
      await notifications.notify(tx, { account, type: "test.ping", data: { message } });
      if (rollback) throw new Error("rolled back on purpose");
    })
    .catch((err: Error) => {
      if (!rollback) throw err;
    });
}

describe("the outbox", () => {
  it("delivers a notification whose transaction commits, and never one whose transaction rolls back", async () => {
    const a = await t.account("client");
    await notifyInTransaction(a.account.id, "rolled back", true);
    await notifyInTransaction(a.account.id, "committed");
    const inbox = await eventually(async () => {
      const i = await inboxOf(a);
      return i.items.length > 0 ? i : undefined;
    });
    expect(inbox.items.map((n) => n.data)).toEqual([{ message: "committed" }]);
    await new Promise((r) => setTimeout(r, 300));
    const [{ n }] = (await t.deps.database.sql`
      select count(*)::int as n from notifications where account_id = ${a.account.id}`) as [{ n: number }];
    expect(n).toBe(1);
  });

  it("refuses data that does not match the type's schema, and so the change with it", async () => {
    const a = await t.account("client");
    await expect(
      t.deps.database.sql.begin((tx) =>
        t.deps.services.notifications.notify(tx, {
          account: a.account.id,
          type: "test.ping",
          data: { message: 42 } as never,
        }),
      ),
    ).rejects.toThrow();
  });

  it("keeps what a relay enqueued but did not commit, and enqueues each notification once", async () => {
    // No worker runs here: this test is the relay that dies.
    const r = await createTestContext();
    try {
      const a = await r.account("client");
      const sql = r.deps.database.sql;
      await sql.begin((tx) =>
        r.deps.services.notifications.notify(tx, {
          account: a.account.id,
          type: "test.ping",
          data: { message: "once" },
        }),
      );
      const queue = r.deps.queues.get(notificationsQueue.name);
      await expect(
        relayOutbox(sql, 1_000, async (ids) => {
          await queue.addBulk(
            ids.map((id) => ({ name: "notifications.publish", data: { id }, opts: { jobId: `n-${id}` } })),
          );
          throw new Error("the relay died before its commit");
        }),
      ).rejects.toThrow(/died/);
      const [row] =
        (await sql`select id, relayed_at as "relayedAt" from notifications where account_id = ${a.account.id}`) as [
          { id: number; relayedAt: Date | null },
        ];
      expect(row.relayedAt).toBeNull();
      expect(await queue.getJobCountByTypes("waiting")).toBe(1);

      // The next relay (a worker's) moves it again: the same job, not a second one.
      r.startWorkers({ WORKER_QUEUES: "notifications" });
      const inbox = await eventually(async () => {
        const res = await r.app.request("/v1/notifications", { headers: a.headers });
        const i = (await res.json()) as Inbox;
        return i.items.length > 0 ? i : undefined;
      });
      expect(inbox.items.map((n) => n.data)).toEqual([{ message: "once" }]);
      const jobs = await queue.getJobs(["completed", "waiting", "active", "delayed"]);
      // (Besides the scheduled jobs a worker sets up.)
      expect(jobs.filter((j) => j.name === "notifications.publish").map((j) => j.id)).toEqual([
        `n-${row.id}`,
      ]);
    } finally {
      await r.close();
    }
  });
});

describe("the inbox", () => {
  it("shows an account its own notifications, newest first, unread ones on request, marked read", async () => {
    const [a, b] = [await t.account("client"), await t.account("client")];
    for (const message of ["one", "two", "three"]) await notifyInTransaction(a.account.id, message);
    await notifyInTransaction(b.account.id, "b's");
    const all = await eventually(async () => {
      const i = await inboxOf(a);
      return i.items.length === 3 ? i : undefined;
    });
    expect(all.items.map((n) => (n.data as { message: string }).message)).toEqual(["three", "two", "one"]);
    const page = await inboxOf(a, "?limit=2");
    expect(page.items).toHaveLength(2);
    expect((await inboxOf(a, `?before=${page.nextBefore}`)).items.map((n) => n.data)).toEqual([
      { message: "one" },
    ]);

    const first = all.items[2] as { id: number };
    // Another account's notification is as unknown as one that does not exist.
    expect(
      (await t.app.request(`/v1/notifications/${first.id}/read`, { method: "POST", headers: b.headers }))
        .status,
    ).toBe(404);
    expect(
      (await t.app.request(`/v1/notifications/${first.id}/read`, { method: "POST", headers: a.headers }))
        .status,
    ).toBe(204);
    expect((await inboxOf(a, "?unread=true")).items.map((n) => n.data)).toEqual([
      { message: "three" },
      { message: "two" },
    ]);
    const marked = await t.app.request("/v1/notifications/read-all", { method: "POST", headers: a.headers });
    expect(await marked.json()).toEqual({ marked: 2 });
    expect((await inboxOf(a, "?unread=true")).items).toEqual([]);
    expect((await inboxOf(b)).items.map((n) => n.data)).toEqual([{ message: "b's" }]);
    expect((await get("/v1/notifications?limit=0", a.headers)).status).toBe(400);
  });

  it("tells a key's owner that it was revoked (the identity domain notifies in its transaction)", async () => {
    const owner = await t.account("client");
    await t.app.request(`/v1/keys/${owner.keyId}/revoke`, { method: "POST", headers: admin.headers });
    const other = await t.deps.services.identity.createKey(
      { accountId: null, keyId: null, requestId: null },
      { accountId: owner.account.id },
    );
    const inbox = await eventually(async () => {
      const i = (await (await get("/v1/notifications", { "x-api-key": other.secret })).json()) as Inbox;
      return i.items.length > 0 ? i : undefined;
    });
    expect(inbox.items[0]).toMatchObject({ type: "key.revoked", data: { keyId: owner.keyId } });
  });

  it("tells a key's owner a week before it expires, once", async () => {
    const owner = await t.account("client");
    const identity = t.deps.services.identity;
    const actor = { accountId: null, keyId: null, requestId: null };
    const soon = await identity.createKey(actor, {
      accountId: owner.account.id,
      expiresAt: new Date(Date.now() + 2 * 86_400_000),
    });
    await identity.createKey(actor, {
      accountId: owner.account.id,
      expiresAt: new Date(Date.now() + 30 * 86_400_000),
    });
    expect(await identity.notifyExpiringKeys(t.logger)).toBeGreaterThanOrEqual(1);
    expect(await identity.notifyExpiringKeys(t.logger)).toBe(0);
    const inbox = await eventually(async () => {
      const i = await inboxOf(owner);
      return i.items.length > 0 ? i : undefined;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await inboxOf(owner)).items.map((n) => [n.type, (n.data as { keyId: string }).keyId])).toEqual([
      ["key.expiring", soon.key.id],
    ]);
    expect(inbox.items[0]?.data).toMatchObject({ prefix: soon.key.prefix, expiresAt: soon.key.expiresAt });
  });

  it("serves the catalog of types with their schemas and examples", async () => {
    const res = await get("/v1/notifications/types", admin.headers);
    const { items } = (await res.json()) as {
      items: { name: string; schema: { type?: string }; example: unknown }[];
    };
    const revoked = items.find((i) => i.name === "key.revoked");
    expect(revoked?.schema.type).toBe("object");
    expect(revoked?.example).toMatchObject({ keyId: expect.any(String) });
  });
});

describe("announced types (alerts)", () => {
  const put = (path: string, headers: Record<string, string>, body: unknown) =>
    t.app.request(path, {
      method: "PUT",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const alertEvent = (alertId: string, status: string, extra: Record<string, string> = {}) => ({
    type: status === "TRIGGERED" ? "ALERT_CREATED" : "ALERT_CHANGED",
    alert: {
      alertId,
      name: "Disk usage above 90%",
      status,
      service: { serviceId: "s-1", name: "db-primary" },
      triggeredOn: "2026-12-03T10:00:00.000Z",
      ...extra,
    },
  });

  it("tells the ops and admins who subscribe that an alert was triggered, acknowledged and resolved, once each", async () => {
    const [subscribed, unsubscribed] = [await t.account("ops"), await t.account("ops")];
    for (const type of ["alert.triggered", "alert.acknowledged", "alert.resolved"]) {
      const res = await put(`/v1/notifications/subscriptions/${type}`, subscribed.headers, {
        subscribed: true,
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ type, subscribed: true, default: false });
    }
    const listed = (await (await get("/v1/notifications/subscriptions", subscribed.headers)).json()) as {
      items: { type: string; subscribed: boolean }[];
    };
    expect(listed.items.filter((i) => i.type.startsWith("alert."))).toEqual([
      { type: "alert.triggered", subscribed: true, default: false },
      { type: "alert.acknowledged", subscribed: true, default: false },
      { type: "alert.resolved", subscribed: true, default: false },
    ]);

    const alertId = `a-${subscribed.account.id}`;
    const alerts = t.deps.services.alerts;
    await alerts.ingest([alertEvent(alertId, "TRIGGERED")] as never);
    // A repeat, and an event that only fills in a responder, move nothing: no notification.
    await alerts.ingest([alertEvent(alertId, "TRIGGERED")] as never);
    const acked = { acknowledgedOn: "2026-12-03T10:04:00.000Z" };
    await alerts.ingest([alertEvent(alertId, "ACKNOWLEDGED", acked)] as never);
    await alerts.ingest([
      alertEvent(alertId, "ACKNOWLEDGED", acked),
      alertEvent(alertId, "RESOLVED", { ...acked, resolvedOn: "2026-12-03T10:20:00.000Z" }),
    ] as never);

    const inbox = await eventually(async () => {
      const i = await inboxOf(subscribed);
      return i.items.length >= 3 ? i : undefined;
    });
    expect(inbox.items.map((n) => [n.type, (n.data as { at: string }).at])).toEqual([
      ["alert.resolved", "2026-12-03T10:20:00.000Z"],
      ["alert.acknowledged", "2026-12-03T10:04:00.000Z"],
      ["alert.triggered", "2026-12-03T10:00:00.000Z"],
    ]);
    expect(inbox.items[2]?.data).toMatchObject({ alertId, status: "TRIGGERED", serviceName: "db-primary" });
    // Subscriptions are opt-in: an ops who never chose hears nothing.
    expect((await inboxOf(unsubscribed)).items.filter((n) => n.type.startsWith("alert."))).toEqual([]);
  });

  it("stops announcing to an account that unsubscribes", async () => {
    const ops = await t.account("ops");
    const alerts = t.deps.services.alerts;
    await put("/v1/notifications/subscriptions/alert.triggered", ops.headers, { subscribed: true });
    await alerts.ingest([alertEvent(`a1-${ops.account.id}`, "TRIGGERED")] as never);
    await eventually(async () => ((await inboxOf(ops)).items.length === 1 ? true : undefined));
    await put("/v1/notifications/subscriptions/alert.triggered", ops.headers, { subscribed: false });
    await alerts.ingest([alertEvent(`a2-${ops.account.id}`, "TRIGGERED")] as never);
    await new Promise((r) => setTimeout(r, 500));
    expect((await inboxOf(ops)).items).toHaveLength(1);
  });

  it("refuses a subscription outside the type's audience, to a type sent to one account, or to no type", async () => {
    const quant = await t.account("quant");
    const forbidden = await put("/v1/notifications/subscriptions/alert.triggered", quant.headers, {
      subscribed: true,
    });
    expect(forbidden.status).toBe(403);
    expect(await forbidden.json()).toMatchObject({ error: { code: "FORBIDDEN" } });
    const personal = await put("/v1/notifications/subscriptions/key.revoked", admin.headers, {
      subscribed: true,
    });
    expect(personal.status).toBe(400);
    expect(await personal.json()).toMatchObject({ error: { message: expect.stringMatching(/key.revoked/) } });
    const unknown = await put("/v1/notifications/subscriptions/no.such", admin.headers, { subscribed: true });
    expect(unknown.status).toBe(404);
    const bad = await put("/v1/notifications/subscriptions/alert.triggered", admin.headers, {
      subscribed: "yes",
    });
    expect(bad.status).toBe(400);
    expect(
      ((await (await get("/v1/notifications/subscriptions", quant.headers)).json()) as { items: unknown[] })
        .items,
    ).toEqual([]);
  });
});

describe("the live stream", () => {
  it("streams an account its own notifications, and resumes after Last-Event-ID", async () => {
    const [a, b] = [await t.account("client"), await t.account("client")];
    const res = await get("/v1/notifications/stream", a.headers);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    const until = async (done: () => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!done() && Date.now() < deadline) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += decoder.decode(chunk.value, { stream: true });
      }
    };
    await until(() => text.includes("event: ready"));
    await notifyInTransaction(b.account.id, "not for a");
    await notifyInTransaction(a.account.id, "for a");
    await until(() => text.includes("for a"));
    await reader.cancel();
    expect(text).toContain('"message":"for a"');
    expect(text).not.toContain("not for a");
    const block = text.split("\n\n").find((b) => b.includes("for a") && !b.includes("not for a")) ?? "";
    const lastId = /^id: (\d+)$/m.exec(block)?.[1] as string;
    expect(lastId).toMatch(/^\d+$/);

    await notifyInTransaction(a.account.id, "missed while away");
    await eventually(async () => ((await inboxOf(a)).items.length === 2 ? true : undefined));
    const resumed = await get("/v1/notifications/stream", { ...a.headers, "last-event-id": lastId });
    const again = (resumed.body as ReadableStream<Uint8Array>).getReader();
    let replayed = "";
    const deadline = Date.now() + 10_000;
    while (!replayed.includes("missed while away") && Date.now() < deadline) {
      const chunk = await again.read();
      if (chunk.done) break;
      replayed += decoder.decode(chunk.value);
    }
    await again.cancel();
    expect(replayed).toContain("missed while away");
    expect(replayed).not.toContain('"message":"for a"');
  });
});

import { randomUUID } from "node:crypto";
import type { Job } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../domains/identity/api-keys.js";
import { createTestContext, eventually, type TestContext } from "../../test/helpers/context.js";

let t: TestContext;
/** A GET as an ops account of `ctx` (alerts are read by operators), made on first use. */
const opsKeys = new WeakMap<TestContext, Promise<{ "X-API-Key": string }>>();
function asOps(ctx: TestContext, path: string) {
  let headers = opsKeys.get(ctx);
  if (!headers) {
    headers = ctx.account("ops").then((a) => a.headers);
    opsKeys.set(ctx, headers);
  }
  return headers.then((h) => ctx.app.request(path, { headers: h }));
}

beforeAll(async () => {
  t = await createTestContext();
  t.startWorkers();
});
afterAll(() => t.close());

type Alert = Record<string, unknown> & { status?: string };

const event = (type: "ALERT_CREATED" | "ALERT_CHANGED", alert: Record<string, unknown>) => ({
  type,
  alert: {
    name: "Random alert #0",
    status: "TRIGGERED",
    responder: { userId: "u-1", name: "Daisy Wilson" },
    service: { serviceId: "s-1", name: "Events API" },
    triggeredOn: "2026-11-21T11:00:00.000Z",
    ...alert,
  },
});

const post = (body: unknown, headers: Record<string, string> = {}) =>
  t.app.request("/v1/alerts/events", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

const getAlert = async (id: string): Promise<Alert | undefined> => {
  const res = await asOps(t, `/v1/alerts/${id}`);
  return res.status === 200 ? ((await res.json()) as Alert) : undefined;
};

/** Waits until the alert's row satisfies `ok`. */
const alertWhere = (id: string, ok: (a: Alert) => boolean) =>
  eventually(async () => {
    const a = await getAlert(id);
    return a && ok(a) ? a : undefined;
  });

/** Posts the events in order and waits until each has been processed. */
async function ingest(...events: unknown[]) {
  for (const e of events) {
    const res = await post(e, { Prefer: "wait=10" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { state: string }).state).toBe("completed");
  }
}

describe("POST /v1/alerts/events", () => {
  it("accepts an event with 202 and the job, and the alert becomes queryable", async () => {
    const id = randomUUID();
    const res = await post(event("ALERT_CREATED", { alertId: id }));
    expect(res.status).toBe(202);
    const body = (await res.json()) as { job: { queue: string; id: string; statusUrl: string } };
    expect(body.job.queue).toBe("alert-ingestion");
    expect(res.headers.get("location")).toBe(body.job.statusUrl);
    const alert = await alertWhere(id, () => true);
    expect(alert).toMatchObject({
      alertId: id,
      name: "Random alert #0",
      status: "TRIGGERED",
      responder: { userId: "u-1", name: "Daisy Wilson" },
      service: { serviceId: "s-1", name: "Events API" },
      triggeredOn: "2026-11-21T11:00:00.000Z",
      acknowledgedOn: null,
      resolvedOn: null,
    });
    // The row is written a moment before BullMQ marks the job completed.
    const job = await eventually(async () => {
      const res = await t.app.request(body.job.statusUrl);
      const view = (await res.json()) as { state: string };
      return view.state === "completed" ? view : undefined;
    });
    // A plain event travels in the API's batch job (alone here: nothing else was posted with it).
    expect(job).toMatchObject({
      id: body.job.id,
      name: "alerts.ingestBatch",
      attempts: 1,
      result: { events: 1 },
    });
  });

  it("keeps a merged batch job small: its count, not its events (a single event's job keeps it)", async () => {
    const queue = t.deps.queues.get("alert-ingestion");
    // The state first: a job read before it completed would show its data as it was then.
    const completed = async (jobId: string) => {
      await eventually(async () => ((await queue.getJobState(jobId)) === "completed" ? true : undefined));
      return (await queue.getJob(jobId)) as Job;
    };
    const responses = await Promise.all(
      [1, 2, 3].map(() => post(event("ALERT_CREATED", { alertId: randomUUID() }))),
    );
    const jobIds = new Set(
      await Promise.all(responses.map(async (r) => ((await r.json()) as { job: { id: string } }).job.id)),
    );
    let events = 0;
    for (const id of jobIds) {
      const job = await completed(id);
      expect(job.name).toBe("alerts.ingestBatch");
      expect(job.data).toEqual({ merged: job.returnvalue.events, owners: ["anonymous"] });
      events += job.data.merged;
    }
    expect(events).toBe(3);

    const single = event("ALERT_CREATED", { alertId: randomUUID() });
    const res = await post(single, { "Idempotency-Key": randomUUID() });
    const job = await completed(((await res.json()) as { job: { id: string } }).job.id);
    expect(job.name).toBe("alerts.ingest");
    expect(job.data).toMatchObject(single);
  });

  it("completes a batch job delivered again after its merge, from its count", async () => {
    const queue = t.deps.queues.get("alert-ingestion");
    const { id = "" } = await queue.add("alerts.ingestBatch", { merged: 7 });
    await eventually(async () => ((await queue.getJobState(id)) === "completed" ? true : undefined));
    expect((await queue.getJob(id))?.returnvalue).toEqual({ events: 7 });
  });

  it("inserts an alert first seen through ALERT_CHANGED (a missed ALERT_CREATED)", async () => {
    const id = randomUUID();
    await ingest(
      event("ALERT_CHANGED", {
        alertId: id,
        status: "ACKNOWLEDGED",
        acknowledgedOn: "2026-11-21T11:01:00.000Z",
      }),
    );
    expect(await getAlert(id)).toMatchObject({
      status: "ACKNOWLEDGED",
      acknowledgedOn: "2026-11-21T11:01:00.000Z",
    });
  });

  it("never moves an alert backwards: a late acknowledgement after the resolution", async () => {
    const id = randomUUID();
    await ingest(
      event("ALERT_CREATED", { alertId: id }),
      event("ALERT_CHANGED", { alertId: id, status: "RESOLVED", resolvedOn: "2026-11-21T11:10:00.000Z" }),
      event("ALERT_CHANGED", {
        alertId: id,
        status: "ACKNOWLEDGED",
        acknowledgedOn: "2026-11-21T11:05:00.000Z",
      }),
      event("ALERT_CHANGED", { alertId: id, status: "TRIGGERED" }),
    );
    expect(await getAlert(id)).toMatchObject({
      status: "RESOLVED",
      acknowledgedOn: "2026-11-21T11:05:00.000Z",
      resolvedOn: "2026-11-21T11:10:00.000Z",
    });
  });

  it("treats resolvedOn as resolved whatever status says, and keeps a known acknowledgedOn", async () => {
    const id = randomUUID();
    await ingest(
      event("ALERT_CHANGED", {
        alertId: id,
        status: "ACKNOWLEDGED",
        acknowledgedOn: "2026-11-21T11:02:00.000Z",
      }),
      event("ALERT_CHANGED", { alertId: id, status: "TRIGGERED", resolvedOn: "2026-11-21T11:09:00.000Z" }),
    );
    expect(await getAlert(id)).toMatchObject({
      status: "RESOLVED",
      acknowledgedOn: "2026-11-21T11:02:00.000Z",
      resolvedOn: "2026-11-21T11:09:00.000Z",
    });
  });

  it("changes nothing on a duplicate event", async () => {
    const id = randomUUID();
    const ack = event("ALERT_CHANGED", {
      alertId: id,
      status: "ACKNOWLEDGED",
      acknowledgedOn: "2026-11-21T11:03:00.000Z",
    });
    await ingest(event("ALERT_CREATED", { alertId: id }), ack);
    const before = await getAlert(id);
    await ingest(ack, ack);
    expect(await getAlert(id)).toEqual(before);
  });

  it("ends in the right state when many events for one alert are processed at once", async () => {
    const id = randomUUID();
    const events = [
      event("ALERT_CREATED", { alertId: id }),
      event("ALERT_CHANGED", {
        alertId: id,
        status: "ACKNOWLEDGED",
        acknowledgedOn: "2026-11-21T11:04:00.000Z",
      }),
      event("ALERT_CHANGED", {
        alertId: id,
        status: "RESOLVED",
        acknowledgedOn: "2026-11-21T11:04:00.000Z",
        resolvedOn: "2026-11-21T11:20:00.000Z",
      }),
    ];
    // Every permutation, several times over, all in flight together.
    const all = Array.from({ length: 8 }, () => [...events].sort(() => Math.random() - 0.5)).flat();
    const responses = await Promise.all(all.map((e) => post(e)));
    expect(responses.every((r) => r.status === 202)).toBe(true);
    // Posted together, they were enqueued together: fewer jobs than events, each named in a 202.
    const ids = await Promise.all(
      responses.map(async (r) => ((await r.json()) as { job: { id: string } }).job.id),
    );
    expect(new Set(ids).size).toBeLessThan(all.length);
    const alert = await alertWhere(id, (a) => a.status === "RESOLVED");
    expect(alert).toMatchObject({
      acknowledgedOn: "2026-11-21T11:04:00.000Z",
      resolvedOn: "2026-11-21T11:20:00.000Z",
    });
  });

  it.each([
    ["not JSON", "{not json", 400, "INVALID_JSON"],
    [
      "an unknown type",
      event("ALERT_DELETED" as "ALERT_CREATED", { alertId: "x" }),
      400,
      "VALIDATION_FAILED",
    ],
    ["a missing alertId", event("ALERT_CREATED", {}), 400, "VALIDATION_FAILED"],
    ["a wrong type", event("ALERT_CREATED", { alertId: 42 }), 400, "VALIDATION_FAILED"],
    [
      "a timestamp that is not ISO-8601",
      event("ALERT_CREATED", { alertId: "x", triggeredOn: "21/11/2026" }),
      400,
      "VALIDATION_FAILED",
    ],
    ["an unknown status", event("ALERT_CREATED", { alertId: "x", status: "OPEN" }), 400, "VALIDATION_FAILED"],
    // Postgres cannot store these: refused at the edge, so they never reach (and sink) a batch.
    [
      "a NUL character in a name",
      event("ALERT_CREATED", { alertId: "x", name: "a\u0000b" }),
      400,
      "VALIDATION_FAILED",
    ],
    [
      "year 0000",
      event("ALERT_CREATED", { alertId: "x", triggeredOn: "0000-01-01T00:00:00Z" }),
      400,
      "VALIDATION_FAILED",
    ],
    [
      "a body over the limit",
      event("ALERT_CREATED", { alertId: "x", name: "n".repeat(2 * 1024 * 1024) }),
      413,
      "PAYLOAD_TOO_LARGE",
    ],
  ])("rejects %s with the error body and enqueues nothing", async (_label, body, status, code) => {
    const before = await t.deps.queues.get("alert-ingestion").count();
    const res = await post(body);
    expect(res.status).toBe(status);
    const json = (await res.json()) as { error: { code: string; message: string; requestId: string } };
    expect(json.error.code).toBe(code);
    expect(json.error.requestId).toBe(res.headers.get("x-request-id"));
    expect(await t.deps.queues.get("alert-ingestion").count()).toBe(before);
  });

  it("rejects a body that is not declared as JSON with 415", async () => {
    const res = await t.app.request("/v1/alerts/events", {
      method: "POST",
      body: "x",
      headers: { "content-type": "text/plain" },
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
});

describe("ALERTS_INGEST_TOKEN", () => {
  let secured: TestContext;
  beforeAll(async () => {
    secured = await createTestContext({ ALERTS_INGEST_TOKEN: "s3cret-token-0123456789" });
  });
  afterAll(() => secured.close());

  const send = (headers: Record<string, string>) =>
    secured.app.request("/v1/alerts/events", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(event("ALERT_CREATED", { alertId: randomUUID() })),
    });

  it("requires the Bearer token when configured", async () => {
    expect((await send({})).status).toBe(401);
    expect((await send({ authorization: "Bearer wrong-token-0123456789" })).status).toBe(401);
    expect((await send({ authorization: "Bearer s3cret-token-0123456789" })).status).toBe(202);
  });
});

describe("GET /v1/alerts and /v1/alerts/stats", () => {
  const runId = randomUUID().slice(0, 8);
  const svc = (n: string) => `${n}-${runId}`;
  const minutes = (m: number) => new Date(Date.parse("2026-11-01T00:00:00.000Z") + m * 60_000).toISOString();

  beforeAll(async () => {
    // Service A: acked after 1, 3, 5 min; resolved after 10, 20 min. Service B: one triggered.
    const seed = [
      {
        alertId: `${runId}-1`,
        service: { name: svc("A") },
        responder: { name: "Ann" },
        triggeredOn: minutes(0),
        acknowledgedOn: minutes(1),
        resolvedOn: minutes(10),
        status: "RESOLVED",
      },
      {
        alertId: `${runId}-2`,
        service: { name: svc("A") },
        responder: { name: "Ann" },
        triggeredOn: minutes(1),
        acknowledgedOn: minutes(4),
        resolvedOn: minutes(21),
        status: "RESOLVED",
      },
      {
        alertId: `${runId}-3`,
        service: { name: svc("A") },
        responder: { name: "Bob" },
        triggeredOn: minutes(2),
        acknowledgedOn: minutes(7),
        status: "ACKNOWLEDGED",
      },
      {
        alertId: `${runId}-4`,
        service: { name: svc("B") },
        responder: { name: "Bob" },
        triggeredOn: minutes(3),
        status: "TRIGGERED",
        name: "Disk full",
      },
    ];
    await Promise.all(seed.map((a) => post(event("ALERT_CHANGED", a), { Prefer: "wait=10" })));
  });

  it("lists newest first with filters and cursor pagination", async () => {
    const page1 = await asOps(t, `/v1/alerts?service=${svc("A")}&limit=2`);
    expect(page1.status).toBe(200);
    const p1 = (await page1.json()) as { items: Alert[]; nextCursor: string | null };
    expect(p1.items.map((a) => a.alertId)).toEqual([`${runId}-3`, `${runId}-2`]);
    expect(p1.nextCursor).toEqual(expect.any(String));
    const p2 = (await (
      await asOps(t, `/v1/alerts?service=${svc("A")}&limit=2&cursor=${p1.nextCursor}`)
    ).json()) as {
      items: Alert[];
      nextCursor: string | null;
    };
    expect(p2.items.map((a) => a.alertId)).toEqual([`${runId}-1`]);
    expect(p2.nextCursor).toBeNull();

    const byStatus = (await (await asOps(t, `/v1/alerts?service=${svc("A")}&status=RESOLVED`)).json()) as {
      items: Alert[];
    };
    expect(byStatus.items.map((a) => a.alertId).sort()).toEqual([`${runId}-1`, `${runId}-2`]);
    const byResponder = (await (
      await asOps(t, `/v1/alerts?responder=Bob&from=${minutes(0)}&to=${minutes(3)}`)
    ).json()) as { items: Alert[] };
    expect(byResponder.items.map((a) => a.alertId)).toEqual(
      expect.arrayContaining([`${runId}-3`, `${runId}-4`]),
    );
    const byName = (await (await asOps(t, `/v1/alerts?name=Disk%20full&service=${svc("B")}`)).json()) as {
      items: Alert[];
    };
    expect(byName.items.map((a) => a.alertId)).toEqual([`${runId}-4`]);
    const range = (await (
      await asOps(t, `/v1/alerts?service=${svc("A")}&from=${minutes(1)}&to=${minutes(1)}`)
    ).json()) as { items: Alert[] };
    expect(range.items.map((a) => a.alertId)).toEqual([`${runId}-2`]);
  });

  it("computes counts, MTTA and MTTR in SQL, per group too", async () => {
    const res = await asOps(t, `/v1/alerts/stats?service=${svc("A")}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      total: 3,
      byStatus: { TRIGGERED: 0, ACKNOWLEDGED: 1, RESOLVED: 2 },
      timeToAcknowledgeMs: { count: 3, min: 60_000, mean: 180_000, max: 300_000, p50: 180_000, p95: 288_000 },
      timeToResolveMs: {
        count: 2,
        min: 600_000,
        mean: 900_000,
        max: 1_200_000,
        p50: 900_000,
        p95: 1_170_000,
      },
    });
    const grouped = (await (await asOps(t, `/v1/alerts/stats?responder=Bob&groupBy=service`)).json()) as {
      groups: { key: string; total: number; byStatus: Record<string, number> }[];
    };
    const mine = grouped.groups.filter((g) => g.key.endsWith(runId));
    expect(mine).toEqual([
      expect.objectContaining({
        key: svc("A"),
        total: 1,
        byStatus: { TRIGGERED: 0, ACKNOWLEDGED: 1, RESOLVED: 0 },
      }),
      expect.objectContaining({
        key: svc("B"),
        total: 1,
        byStatus: { TRIGGERED: 1, ACKNOWLEDGED: 0, RESOLVED: 0 },
      }),
    ]);
  });

  it("answers nulls when nothing qualifies", async () => {
    const res = await asOps(t, "/v1/alerts/stats?service=nobody-here");
    expect(await res.json()).toEqual({
      total: 0,
      byStatus: { TRIGGERED: 0, ACKNOWLEDGED: 0, RESOLVED: 0 },
      timeToAcknowledgeMs: { count: 0, min: null, mean: null, max: null, p50: null, p95: null },
      timeToResolveMs: { count: 0, min: null, mean: null, max: null, p50: null, p95: null },
    });
  });

  it("rejects bad filters and unknown alerts with the error body", async () => {
    for (const q of [
      "status=OPEN",
      "from=yesterday",
      "limit=0",
      "limit=9999",
      "cursor=bogus",
      "groupBy=team",
      "from=0000-01-01T00:00:00Z",
      "name=a%00b",
      "service=%00",
    ]) {
      const res = await asOps(t, `/v1/alerts${q.startsWith("groupBy") ? "/stats" : ""}?${q}`);
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("VALIDATION_FAILED");
    }
    expect((await asOps(t, "/v1/alerts/a%00b")).status).toBe(400);
    const missing = await asOps(t, `/v1/alerts/${randomUUID()}`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
  });
});

describe("a failed alerts query", () => {
  // The request log leaves the query string out on purpose; an error must not bring it back.
  const marker = `filter-value-${randomUUID()}`;
  const noFilterValueIn = (ctx: TestContext, msg: string) => {
    expect(ctx.logs.some((l) => l.includes(msg))).toBe(true);
    for (const line of ctx.logs) expect(line).not.toContain(marker);
  };

  it("logs the error without the query's parameters", async () => {
    const broken = await createTestContext();
    try {
      // A schema the code does not expect: every query on the column fails.
      await broken.deps.database.sql`alter table alerts rename column service_name to renamed`;
      const res = await asOps(broken, `/v1/alerts?service=${marker}`);
      expect(res.status).toBe(500);
      noFilterValueIn(broken, "unhandled error");
      expect(broken.logs.some((l) => l.includes("42703") && l.includes("select"))).toBe(true);
    } finally {
      await broken.close();
    }
  });

  it("logs an unreachable Postgres without the query's parameters", async () => {
    const cutOff = await createTestContext({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/conveyor" });
    try {
      // The key cannot even be looked up: Postgres is where keys are.
      const res = await cutOff.app.request(`/v1/alerts/stats?responder=${marker}`, {
        headers: { "X-API-Key": generateApiKey() },
      });
      expect(res.status).toBe(503);
      noFilterValueIn(cutOff, "dependency unavailable");
    } finally {
      await cutOff.close();
    }
  });
});

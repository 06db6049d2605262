import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../api/app.js";
import { createDatabase } from "../db/client.js";
import { createAlertsService } from "../domains/alerts/service.js";
import { createUsageService } from "../domains/usage/service.js";
import { createRedis } from "../lib/redis.js";
import { createQueueRegistry } from "../queues/registry.js";
import { createTestContext, eventually, type TestContext } from "../test/helpers/context.js";
import { peer, readEvents, type SseEvent, serveApp } from "../test/helpers/http.js";
import { createDashboardsApp } from "./dashboards-app.js";
import { CHART_CLIENTS } from "./usage-page.js";

type Requester = { request: (path: string, init?: RequestInit) => Response | Promise<Response> };

const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
});

const USER = "ops";
const PASSWORD = "correct-horse-battery";
const ops = basic(USER, PASSWORD);

/** Every operator surface, Bull Board's own API and static files included. */
const PROTECTED = [
  "/dashboard",
  "/dashboard/live",
  "/dashboard/api/queues",
  "/dashboard/usage",
  "/dashboard/usage/live",
  "/admin/queues",
  "/admin/queues/queue/alert-ingestion",
  "/admin/queues/api/queues",
  "/admin/queues/static/favicon-32x32.png",
];

async function expectUnauthorized(res: Response) {
  expect(res.status).toBe(401);
  expect(res.headers.get("www-authenticate")).toMatch(/^Basic realm="conveyor"/);
  const body = (await res.json()) as { error: { code: string; message: string; requestId: string } };
  expect(body.error.code).toBe("UNAUTHORIZED");
  expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
  return body.error.message;
}

/** Bull Board's page, and the paths of its script and stylesheet as the page names them. */
async function bullBoardAssets(app: Requester) {
  const res = await app.request("/admin/queues", { headers: ops });
  expect(res.status).toBe(200);
  const page = await res.text();
  expect(page).toContain('<base href="/admin/queues/"');
  const script = /src="(static\/js\/main\.[\w.]+\.js)"/.exec(page)?.[1];
  const stylesheet = /href="(static\/css\/main\.[\w.]+\.css)"/.exec(page)?.[1];
  expect(script).toBeDefined();
  expect(stylesheet).toBeDefined();
  return { script: `/admin/queues/${script}`, stylesheet: `/admin/queues/${stylesheet}` };
}

async function expectAssetsServed(app: Requester) {
  const { script, stylesheet } = await bullBoardAssets(app);
  const js = await app.request(script, { headers: ops });
  expect(js.status).toBe(200);
  expect(js.headers.get("content-type")).toMatch(/javascript/);
  expect((await js.text()).length).toBeGreaterThan(1000);
  const css = await app.request(stylesheet, { headers: ops });
  expect(css.status).toBe(200);
  expect(css.headers.get("content-type")).toMatch(/^text\/css/);
}

/** Requests a usage event stream counted for `clientId`. */
const addedFor = (events: SseEvent[], clientId: string) =>
  events
    .filter((e) => e.event === "usage")
    .flatMap((e) => (JSON.parse(e.data) as { hits: { client_id: string; added: number }[] }).hits)
    .filter((h) => h.client_id === clientId)
    .reduce((sum, h) => sum + h.added, 0);

describe("dashboards without operator credentials configured", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.close());

  it("refuses every surface with 401, whatever the caller sends, and logs why once", async () => {
    for (const path of PROTECTED) {
      const message = await expectUnauthorized(await t.app.request(path));
      expect(message).toMatch(/ADMIN_USER and ADMIN_PASSWORD are not set/);
      await expectUnauthorized(await t.app.request(path, { headers: basic("admin", "admin") }));
      await expectUnauthorized(await t.app.request(path, { headers: basic("", "") }));
    }
    const warnings = t.logs
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((l) => l.msg.includes("dashboards are disabled"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40 });
    expect(warnings[0]?.msg).toMatch(/ADMIN_USER and ADMIN_PASSWORD are not set/);
  });

  it("opens with the dev start's password, as `admin` or as ADMIN_USER when that alone is set", async () => {
    const dev = createApp({ ...t.deps, devDashboardsPassword: "dev-generated-pass" });
    await expectUnauthorized(await dev.request("/dashboard"));
    await expectUnauthorized(await dev.request("/dashboard", { headers: basic("admin", "wrong-password") }));
    expect((await dev.request("/dashboard", { headers: basic("admin", "dev-generated-pass") })).status).toBe(
      200,
    );
    expect(
      (await dev.request("/admin/queues", { headers: basic("admin", "dev-generated-pass") })).status,
    ).toBe(200);

    const named = createApp({
      ...t.deps,
      config: { ...t.deps.config, ADMIN_USER: "oncall" },
      devDashboardsPassword: "dev-generated-pass",
    });
    await expectUnauthorized(
      await named.request("/dashboard", { headers: basic("admin", "dev-generated-pass") }),
    );
    expect(
      (await named.request("/dashboard", { headers: basic("oncall", "dev-generated-pass") })).status,
    ).toBe(200);
  });

  it("opens to an ops or admin API key (header, Bearer, or as the Basic password), not to other roles", async () => {
    const admin = await t.account("admin");
    const operator = await t.account("ops");
    const client = await t.account("client");
    const token = (await (
      await t.app.request("/v1/tokens", { method: "POST", headers: operator.headers })
    ).json()) as { access_token: string };
    for (const path of PROTECTED) {
      for (const headers of [
        admin.headers,
        { "x-api-key": operator.secret },
        { authorization: `Bearer ${token.access_token}` },
        basic("anyone", operator.secret),
      ])
        expect((await t.app.request(path, { headers })).status, `${path} ${JSON.stringify(headers)}`).toBe(
          200,
        );
      const refused = await t.app.request(path, { headers: basic("", client.secret) });
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("FORBIDDEN");
    }
    await t.app.request(`/v1/keys/${operator.keyId}/revoke`, { method: "POST", headers: admin.headers });
    const message = await expectUnauthorized(
      await t.app.request("/dashboard", { headers: basic("anyone", operator.secret) }),
    );
    expect(message).toMatch(/revoked/);
  });

  it("names the one variable that is missing", async () => {
    const before = t.logs.length;
    const app = createApp({ ...t.deps, config: { ...t.deps.config, ADMIN_USER: "ops" } });
    const message = await expectUnauthorized(await app.request("/dashboard", { headers: basic("ops", "x") }));
    expect(message).toMatch(/ADMIN_PASSWORD is not set/);
    expect(t.logs.slice(before).some((l) => l.includes("ADMIN_PASSWORD is not set"))).toBe(true);
  });
});

describe("dashboards with operator credentials", () => {
  let t: TestContext;
  const runId = randomUUID().slice(0, 8);
  const hostile = `<script>alert("${runId}")</script>`;
  const hostileService = `"><img src=x onerror=alert(1)>${runId}`;

  beforeAll(async () => {
    t = await createTestContext({ ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD });
    // Only the queues this file feeds: the others' processors need services these tests do not start.
    t.startWorkers({ WORKER_QUEUES: "alert-ingestion,log-batching" });
    const events = [
      {
        alertId: `${runId}-1`,
        name: "Disk full",
        service: { name: `checkout-${runId}` },
        status: "TRIGGERED",
      },
      {
        alertId: `${runId}-2`,
        name: "Latency high",
        service: { name: `checkout-${runId}` },
        status: "ACKNOWLEDGED",
        acknowledgedOn: "2026-11-21T11:03:00.000Z",
      },
      { alertId: `${runId}-3`, name: hostile, service: { name: hostileService }, status: "TRIGGERED" },
    ];
    for (const alert of events) {
      const res = await t.app.request("/v1/alerts/events", {
        method: "POST",
        headers: { "content-type": "application/json", prefer: "wait=10" },
        body: JSON.stringify({
          type: "ALERT_CREATED",
          alert: { responder: { name: "Dana" }, triggeredOn: "2026-11-21T11:00:00.000Z", ...alert },
        }),
      });
      expect(res.status).toBe(200);
    }
  });
  afterAll(() => t.close());

  it("answers 401 to missing, wrong and malformed credentials on every surface", async () => {
    for (const [i, path] of PROTECTED.entries()) {
      // An address per surface, so that the failed-login limit (10 per minute) is not reached.
      const from = peer(`192.0.2.${i + 1}`);
      const request = (headers?: Record<string, string>) => t.app.request(path, { headers }, from);
      await expectUnauthorized(await request());
      await expectUnauthorized(await request(basic(USER, "wrong-password")));
      await expectUnauthorized(await request(basic("someone", PASSWORD)));
      await expectUnauthorized(await request(basic(USER, `${PASSWORD}x`)));
      await expectUnauthorized(await request({ authorization: "Basic !!!" }));
      await expectUnauthorized(await request({ authorization: `Bearer ${PASSWORD}` }));
    }
  });

  it("refuses an address with 429 and Retry-After after 10 failed logins; successes do not count", async () => {
    const guesser = peer("198.51.100.7");
    for (let i = 0; i < 10; i++)
      await expectUnauthorized(
        await t.app.request("/dashboard", { headers: basic(USER, `guess-${i}`) }, guesser),
      );
    for (const headers of [basic(USER, "guess-10"), ops]) {
      const refused = await t.app.request("/dashboard", { headers }, guesser);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(60);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("RATE_LIMITED");
    }
    expect(
      t.logs.some((l) => l.includes("too many failed operator logins") && l.includes("198.51.100.7")),
    ).toBe(true);
    // Another address signs in; its successes leave its own budget whole.
    const operator = peer("198.51.100.8");
    for (let i = 0; i < 15; i++)
      expect((await t.app.request("/dashboard/api/queues", { headers: ops }, operator)).status).toBe(200);
    for (let i = 0; i < 10; i++)
      await expectUnauthorized(
        await t.app.request("/dashboard", { headers: basic(USER, `typo-${i}`) }, operator),
      );
    expect((await t.app.request("/dashboard", { headers: ops }, operator)).status).toBe(429);
  });

  it("serves the operator page with counts, MTTA, the per-service table and the latest alerts", async () => {
    const res = await t.app.request(`/dashboard?service=checkout-${runId}`, { headers: ops });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const csp = res.headers.get("content-security-policy") ?? "";
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeDefined();
    const body = await res.text();
    expect(body).toContain(`<script nonce="${nonce}">`);
    expect(body).toMatch(/data-stat="total">2</);
    expect(body).toMatch(/data-stat="TRIGGERED">1</);
    expect(body).toMatch(/data-stat="ACKNOWLEDGED">1</);
    expect(body).toMatch(/data-stat="RESOLVED">0</);
    expect(body).toMatch(/data-stat="mtta">3m 00s</);
    expect(body).toContain(`data-service="checkout-${runId}"`);
    expect(body).toContain(`data-alert-id="${runId}-1"`);
    expect(body).toContain(`data-alert-id="${runId}-2"`);
    expect(body).not.toContain(`data-alert-id="${runId}-3"`);
    expect(body).toContain(`data-src="/dashboard/live?service=checkout-${runId}"`);
    expect(body).toContain(`data-queue="alert-ingestion"`);
  });

  it("escapes every value it renders", async () => {
    for (const path of ["/dashboard", "/dashboard/live"]) {
      const body = await (await t.app.request(path, { headers: ops })).text();
      expect(body).toContain(`&lt;script&gt;alert(&quot;${runId}&quot;)&lt;/script&gt;`);
      expect(body).toContain(`&quot;&gt;&lt;img src=x onerror=alert(1)&gt;${runId}`);
      expect(body).not.toContain(hostile);
      expect(body).not.toContain(hostileService);
    }
    // A filter value comes back in the form and in links: escaped there too.
    const echoed = await (
      await t.app.request(`/dashboard?name=${encodeURIComponent(hostile)}`, { headers: ops })
    ).text();
    expect(echoed).toContain(`value="&lt;script&gt;alert(&quot;${runId}&quot;)&lt;/script&gt;"`);
    expect(echoed).not.toContain(hostile);
  });

  it("serves the self-refreshing fragment and the queue depths", async () => {
    const live = await t.app.request(`/dashboard/live?service=checkout-${runId}&status=TRIGGERED`, {
      headers: ops,
    });
    expect(live.status).toBe(200);
    const fragment = await live.text();
    expect(fragment).not.toContain("<html");
    expect(fragment).toMatch(/data-stat="total">1</);
    expect(fragment).toContain(`data-alert-id="${runId}-1"`);

    const queues = await t.app.request("/dashboard/api/queues", { headers: ops });
    expect(queues.status).toBe(200);
    const depths = (await queues.json()) as { queues: { name: string; counts: Record<string, number> }[] };
    expect(depths.queues.map((q) => q.name)).toEqual([...t.deps.queues.names]);
    for (const q of depths.queues)
      expect(q.counts).toEqual({
        waiting: expect.any(Number),
        active: expect.any(Number),
        delayed: expect.any(Number),
        failed: expect.any(Number),
        completed: expect.any(Number),
      });
    // Every event above went through alert-ingestion and completed.
    expect(depths.queues.find((q) => q.name === "alert-ingestion")?.counts.completed).toBeGreaterThanOrEqual(
      3,
    );
  });

  it("shows bad filters on the page and rejects them on the fragment", async () => {
    const page = await t.app.request("/dashboard?from=yesterday&status=OPEN", { headers: ops });
    expect(page.status).toBe(400);
    const body = await page.text();
    expect(body).toContain("Some filters are not valid");
    expect(body).toMatch(/<b>from<\/b>/);
    expect(body).toMatch(/<b>status<\/b>/);
    expect(body).toContain('value="yesterday"');

    const live = await t.app.request("/dashboard/live?limit=7", { headers: ops });
    expect(live.status).toBe(400);
    expect(((await live.json()) as { error: { code: string } }).error.code).toBe("VALIDATION_FAILED");

    // datetime-local values carry no offset: they are read as UTC.
    const ranged = await (
      await t.app.request(
        `/dashboard/live?service=checkout-${runId}&from=2026-11-21T11:00&to=2026-11-21T11:00:00`,
        {
          headers: ops,
        },
      )
    ).text();
    expect(ranged).toMatch(/data-stat="total">2</);
  });

  describe("the Usage tab", () => {
    const hit = (i: number) => ({ ip: "203.0.113.7", endpoint: `/v2/orders/${i}` });
    const logHits = async (apiKey: string, n: number) => {
      const res = await t.app.request("/api/logs", {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": apiKey },
        body: JSON.stringify({ hits: Array.from({ length: n }, (_, i) => hit(i)) }),
      });
      expect(res.status).toBe(202);
    };
    /** Waits until every client's today count in Postgres reaches what is expected. */
    // Committed, and in the live counters too (they follow each commit by a moment).
    const committed = (expected: Record<string, number>) =>
      eventually(async () => {
        const { value } = await t.deps.services.usage.daily();
        const today = (id: string) => value.find((u) => u.clientId === id)?.days.at(-1)?.requests ?? 0;
        const top = (await t.deps.services.usage.top()).value;
        const live = (id: string) => top.find((c) => c.clientId === id)?.requests ?? 0;
        return Object.entries(expected).every(([id, n]) => today(id) >= n && live(id) >= n)
          ? true
          : undefined;
      }, 15_000);

    const acme = `acme-${runId}`;
    // The API takes letters, digits and . _ - only; the page must not count on it.
    const hostileClient = `"><script>alert(1)</script>${runId}`;
    let acmeKey: string;
    beforeAll(async () => {
      const res = await t.app.request("/api/register", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "Acme", email: `ops-${runId}@acme.example`, client_id: acme }),
      });
      expect(res.status).toBe(201);
      acmeKey = ((await res.json()) as { api_key: string }).api_key;
      const hostileMade = await t.deps.services.usage.register({
        name: "Hostile",
        email: `x-${runId}@hostile.example`,
        clientId: hostileClient,
      });
      await logHits(acmeKey, 3);
      await logHits(hostileMade.apiKey, 2);
      await committed({ [acme]: 3, [hostileClient]: 2 });
    });

    it("serves the top clients and each client's week as an SVG bar chart, linked from the alerts page", async () => {
      const res = await t.app.request("/dashboard/usage", { headers: ops });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/html/);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const nonce = /script-src 'nonce-([^']+)'/.exec(res.headers.get("content-security-policy") ?? "")?.[1];
      expect(nonce).toBeDefined();
      const body = await res.text();
      expect(body).toContain(`<script nonce="${nonce}">`);
      expect(body).toContain('data-stream="/dashboard/usage/stream"');
      expect(body).toContain('data-src="/dashboard/usage/live"');
      // The chart: a row per client, 7 bars, today's the last and as tall as the chart's span.
      const row = new RegExp(`<tr data-client="${acme}">[\\s\\S]*?</tr>`).exec(body)?.[0] ?? "";
      expect(row).toContain('<svg class="week"');
      expect(row.match(/<rect /g)).toHaveLength(7);
      expect(row).toMatch(
        /<rect class="today" data-date="\d{4}-\d{2}-\d{2}" data-requests="3"[^>]*height="44.00"/,
      );
      expect(row).toMatch(/data-col="today" data-n="3">3</);
      expect(row).toMatch(/data-col="week" data-n="3">3</);
      // The top clients, busiest first.
      const top = /<ol id="top-clients">[\s\S]*?<\/ol>/.exec(body)?.[0] ?? "";
      expect(top.indexOf(`data-client="${acme}"`)).toBeGreaterThan(0);
      expect(top.indexOf(`data-client="${acme}"`)).toBeLessThan(top.indexOf('data-client="&quot;&gt;'));
      expect(body).toMatch(/data-usage="today" data-n="5">5</);

      const alerts = await (await t.app.request("/dashboard", { headers: ops })).text();
      expect(alerts).toContain('<a href="/dashboard/usage">Usage</a>');
      expect(body).toContain('<a class="active" aria-current="page" href="/dashboard/usage">Usage</a>');
    });

    it("escapes a client id on the page and in the fragment", async () => {
      for (const path of ["/dashboard/usage", "/dashboard/usage/live"]) {
        const res = await t.app.request(path, { headers: ops });
        expect(res.status).toBe(200);
        const body = await res.text();
        expect(body).toContain(`&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;${runId}`);
        expect(body).not.toContain(hostileClient);
        if (path.endsWith("/live")) expect(body).not.toContain("<html");
      }
    });

    it("streams every client's committed batches to an operator, and nothing without credentials", async () => {
      await expectUnauthorized(await t.app.request("/dashboard/usage/stream"));
      const stream = await t.app.request("/dashboard/usage/stream", { headers: ops });
      expect(stream.status).toBe(200);
      const logged = (async () => {
        // Once the stream is open (its first event is written at once).
        await new Promise((r) => setTimeout(r, 200));
        await logHits(acmeKey, 4);
      })();
      const events = await readEvents(stream, (seen) => addedFor(seen, acme) >= 4);
      await logged;
      expect(events[0]?.event).toBe("ready");
      expect(addedFor(events, acme)).toBe(4);
      const hits = events
        .filter((e) => e.event === "usage")
        .flatMap((e) => (JSON.parse(e.data) as { hits: { hour: string }[] }).hits);
      expect(hits[0]?.hour).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:00:00\.000Z$/);
    });

    it("charts the 20 busiest clients of the week, and says of how many", async () => {
      for (let i = 0; i < 20; i++)
        await t.deps.services.usage.register({
          name: `Quiet ${i}`,
          email: `quiet-${i}-${runId}@example.com`,
          clientId: `quiet-${String(i).padStart(2, "0")}-${runId}`,
        });
      const body = await (await t.app.request("/dashboard/usage", { headers: ops })).text();
      const chart = /<table id="usage-chart"[\s\S]*?<\/table>/.exec(body)?.[0] ?? "";
      expect(chart.match(/<tr data-client=/g)).toHaveLength(CHART_CLIENTS);
      // Busiest first, then by id: the two that logged hits, and the first quiet ones.
      expect(chart.indexOf(`data-client="${acme}"`)).toBeLessThan(
        chart.indexOf(`data-client="quiet-00-${runId}"`),
      );
      expect(chart).not.toContain(`data-client="quiet-19-${runId}"`);
      expect(body).toContain(`the ${CHART_CLIENTS} busiest of 22 clients by 7-day total`);
      expect(body).toMatch(/data-usage="clients" data-n="22">22</);
    });
  });

  it("serves Bull Board and its script and stylesheet", async () => {
    await expectAssetsServed(t.app);
    const api = await t.app.request("/admin/queues/api/queues", { headers: ops });
    expect(api.status).toBe(200);
    const { queues } = (await api.json()) as { queues: { name: string }[] };
    expect(queues.map((q) => q.name).sort()).toEqual([...t.deps.queues.names].sort());
  });

  it("serves Bull Board's files when the process runs from another directory", async () => {
    const cwd = process.cwd();
    let app: ReturnType<typeof createApp>;
    process.chdir(tmpdir());
    try {
      app = createApp(t.deps);
      await expectAssetsServed(app);
    } finally {
      process.chdir(cwd);
    }
    // And after the cwd moved again, as it would for a process that chdirs after start.
    await expectAssetsServed(app);
  });

  it("hands Bull Board a JSON body intact over real HTTP (adding a job)", async () => {
    const served = await serveApp(t.app);
    const name = `probe-${randomUUID()}`;
    const queue = t.deps.queues.get("chunk-hashing");
    try {
      const res = await fetch(`${served.url}/admin/queues/api/queues/chunk-hashing/add`, {
        method: "POST",
        headers: { ...ops, "content-type": "application/json", origin: served.url },
        body: JSON.stringify({ name, data: { hello: 1 } }),
      });
      expect(res.status, await res.text()).toBeLessThan(300);
      const jobs = await queue.getJobs(["waiting", "paused", "delayed"]);
      const added = jobs.find((j) => j.name === name);
      expect(added?.data).toEqual({ hello: 1 });
      await added?.remove();
    } finally {
      await served.close();
    }
  });

  it("refuses queue actions that come from another site", async () => {
    const queue = t.deps.queues.get("alert-ingestion");
    const pause = (headers: Record<string, string>) =>
      t.app.request("/admin/queues/api/queues/alert-ingestion/pause", {
        method: "PUT",
        headers: { ...ops, ...headers },
      });
    const crossSite = await pause({ "sec-fetch-site": "cross-site", origin: "https://evil.example" });
    expect(crossSite.status).toBe(403);
    expect(((await crossSite.json()) as { error: { code: string } }).error.code).toBe("FORBIDDEN");
    expect((await pause({ origin: "https://evil.example" })).status).toBe(403);
    expect(await queue.isPaused()).toBe(false);

    try {
      expect(
        (await pause({ "sec-fetch-site": "same-origin", origin: "http://localhost" })).status,
      ).toBeLessThan(300);
      expect(await queue.isPaused()).toBe(true);
    } finally {
      await queue.resume();
    }
  });
});

describe("dashboards while a dependency is down", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext({ ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD });
  });
  afterAll(() => t.close());

  // Port 1 on this machine: nothing listens, so every connection is refused.
  const NOWHERE_PG = "postgres://postgres@127.0.0.1:1/conveyor";
  const NOWHERE_REDIS = "redis://127.0.0.1:1";

  it("still loads the page without Postgres, says why, and answers 503 to the refresh", async () => {
    const database = createDatabase(NOWHERE_PG, { max: 1 });
    try {
      const alerts = createAlertsService(t.deps.config, { database, queues: t.deps.queues });
      const app = createApp({ ...t.deps, database, services: { ...t.deps.services, alerts } });
      const page = await app.request("/dashboard", { headers: ops });
      expect(page.status).toBe(503);
      const body = await page.text();
      expect(body).toContain("Postgres is not answering");
      // The page keeps polling, so it fills in by itself once Postgres is back.
      expect(body).toContain('data-src="/dashboard/live"');
      const live = await app.request("/dashboard/live", { headers: ops });
      expect(live.status).toBe(503);
      expect(live.headers.get("retry-after")).toBe("5");
      expect(((await live.json()) as { error: { code: string } }).error.code).toBe("SERVICE_UNAVAILABLE");
    } finally {
      await database.close(0);
    }
  });

  it("loads the Usage tab without Postgres (503): the top clients show, the chart says it is unavailable", async () => {
    const database = createDatabase(NOWHERE_PG, { max: 1 });
    const usage = createUsageService(
      { ...t.deps.config, DATABASE_READ_URL: undefined },
      { database, redis: t.deps.redis, queues: t.deps.queues, logger: t.logger },
      { identity: t.deps.services.identity },
    );
    try {
      const app = createApp({ ...t.deps, database, services: { ...t.deps.services, usage } });
      const page = await app.request("/dashboard/usage", { headers: ops });
      expect(page.status).toBe(503);
      const body = await page.text();
      expect(body).toContain("The 7-day chart is unavailable");
      expect(body).toContain("No requests in the last 24 hours.");
      expect(body).not.toContain('data-unavailable="top"');
      // The page keeps reading its figures, so it fills in by itself once Postgres is back.
      expect(body).toContain('data-src="/dashboard/usage/live"');
      expect((await app.request("/dashboard/usage/live", { headers: ops })).status).toBe(503);
    } finally {
      await usage.close();
      await database.close(0);
    }
  });

  it("shows the alert figures without Redis, and says the queue depths are unavailable", async () => {
    const redis = createRedis(NOWHERE_REDIS, "producer", t.logger);
    const queues = createQueueRegistry({
      redis,
      redisUrl: NOWHERE_REDIS,
      prefix: t.prefix,
      logger: t.logger,
    });
    try {
      const app = createApp({ ...t.deps, redis, queues });
      const live = await app.request("/dashboard/live", { headers: ops });
      expect(live.status).toBe(200);
      const fragment = await live.text();
      expect(fragment).toMatch(/data-stat="total">0</);
      expect(fragment).toContain("Queue depths are unavailable");
      const depths = await app.request("/dashboard/api/queues", { headers: ops });
      expect(depths.status).toBe(503);
    } finally {
      await queues.close();
      redis.disconnect();
    }
  });

  it("loads the Usage tab without Redis: the chart from Postgres, the top from the rollup, no live updates", async () => {
    const redis = createRedis(NOWHERE_REDIS, "producer", t.logger);
    const queues = createQueueRegistry({
      redis,
      redisUrl: NOWHERE_REDIS,
      prefix: t.prefix,
      logger: t.logger,
    });
    const usage = createUsageService(
      { ...t.deps.config, REDIS_URL: NOWHERE_REDIS },
      { database: t.deps.database, redis, queues, logger: t.logger },
      { identity: t.deps.services.identity },
    );
    const clientId = `rollup-${randomUUID().slice(0, 8)}`;
    await t.deps.services.usage.register({ name: "R", email: `${clientId}@r.example`, clientId });
    try {
      const app = createApp({ ...t.deps, redis, queues, services: { ...t.deps.services, usage } });
      const page = await app.request("/dashboard/usage", { headers: ops });
      expect(page.status).toBe(200);
      const body = await page.text();
      expect(body).toContain(`<tr data-client="${clientId}">`);
      expect(body).toContain("Redis is not answering: counted from the hourly rollup in Postgres.");
      expect(body).toContain('data-state="off"');
      expect(body).toContain("Live updates unavailable: Redis is not answering");
      const stream = await app.request("/dashboard/usage/stream", { headers: ops });
      expect(stream.status).toBe(503);
      expect(stream.headers.get("retry-after")).toBe("5");
    } finally {
      await usage.close();
      await queues.close();
      redis.disconnect();
    }
  });
});

describe("the dashboards process (dashboards/server.ts)", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext({ ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD });
  });
  afterAll(() => t.close());

  it("serves the dashboards and health, and no route that accepts work", async () => {
    const app = createDashboardsApp(t.deps);
    expect((await app.request("/dashboard", { headers: ops })).status).toBe(200);
    await expectUnauthorized(await app.request("/dashboard"));
    await expectAssetsServed(app);
    expect((await app.request("/health")).status).toBe(200);
    expect((await app.request("/ready")).status).toBe(200);
    const root = await app.request("/");
    expect(root.status).toBe(302);
    expect(root.headers.get("location")).toBe("/dashboard");
    const ingest = await app.request("/v1/alerts/events", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(ingest.status).toBe(404);
    expect(((await ingest.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
  });
});

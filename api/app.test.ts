import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestContext, type TestContext } from "../test/helpers/context.js";
import { type ServedApp, serveApp } from "../test/helpers/http.js";

let t: TestContext;
beforeAll(async () => {
  t = await createTestContext();
});
afterAll(() => t.close());

describe("platform endpoints", () => {
  it("GET /health answers without touching dependencies", async () => {
    const res = await t.app.request("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("GET /ready checks Redis and Postgres", async () => {
    const res = await t.app.request("/ready");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: "ready",
      checks: { redis: { ok: true }, postgres: { ok: true } },
    });
  });

  it("echoes a caller's X-Request-Id and makes one otherwise", async () => {
    const mine = await t.app.request("/health", { headers: { "x-request-id": "trace-abc-123" } });
    expect(mine.headers.get("x-request-id")).toBe("trace-abc-123");
    const made = await t.app.request("/health");
    expect(made.headers.get("x-request-id")).toMatch(/^req_[\w-]{20,}$/);
    await t.app.request("/v1/alerts/stats", { headers: { "x-request-id": "trace-abc-456" } });
    const logged = (id: string) => t.logs.some((l) => l.includes(`"requestId":"${id}"`));
    expect(logged("trace-abc-456")).toBe(true);
    // Successful probes are logged at debug only: they would drown the log at info.
    expect(logged("trace-abc-123")).toBe(false);
  });

  it("answers an unknown route with the JSON error body", async () => {
    const res = await t.app.request("/v1/nothing-here", { headers: { "x-request-id": "rid-404" } });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: { code: "NOT_FOUND", message: "no route for GET /v1/nothing-here", requestId: "rid-404" },
    });
  });

  it("serves Prometheus text with HTTP figures by route and status and queue depths by state", async () => {
    const ops = await t.account("ops");
    await t.app.request("/v1/alerts/does-not-exist", { headers: ops.headers });
    const res = await t.app.request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/http_requests_total\{method="GET",route="\/v1\/alerts\/:alertId",status="404"\} 1/);
    expect(text).toMatch(/http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/health"\}/);
    expect(text).toMatch(/queue_jobs\{queue="alert-ingestion",state="waiting"\} \d+/);
    expect(text).toMatch(/queue_jobs\{queue="alert-ingestion",state="failed"\} \d+/);
  });

  it("publishes an OpenAPI document generated from the route schemas, and Swagger UI", async () => {
    const doc = (await (await t.app.request("/openapi.json")).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    expect(doc.openapi).toBe("3.1.0");
    for (const path of [
      "/v1/alerts/events",
      "/v1/alerts",
      "/v1/alerts/stats",
      "/v1/alerts/{alertId}",
      "/v1/jobs/{queue}/{id}",
      "/health",
      "/ready",
      "/metrics",
    ]) {
      expect(doc.paths, path).toHaveProperty([path]);
    }
    expect(Object.keys(doc.paths["/v1/alerts/events"]?.post?.responses ?? {})).toEqual(
      expect.arrayContaining(["202", "400", "413", "503"]),
    );
    const ui = await t.app.request("/docs");
    expect(ui.status).toBe(200);
    const page = await ui.text();
    expect(page).toContain("/openapi.json");
    // Its assets come from this server, not a CDN: the page works without internet access.
    const assets = [...page.matchAll(/(?:href|src)="([^"]+)"/g)].map((m) => m[1] ?? "");
    expect(assets).toHaveLength(2);
    for (const asset of assets) {
      expect(asset).toMatch(/^\/docs\/assets\//);
      const res = await t.app.request(asset);
      expect(res.status, asset).toBe(200);
      expect((await res.arrayBuffer()).byteLength, asset).toBeGreaterThan(10_000);
    }
    expect((await t.app.request("/docs/assets/swagger-ui-dist/package.json")).status).toBe(404);
  });
});

describe("JSON bodies over real HTTP (read straight from Node's request)", () => {
  let served: ServedApp;
  let base: string;
  beforeAll(async () => {
    served = await serveApp(t.app);
    base = served.url;
  });
  afterAll(() => served.close());

  const event = {
    type: "ALERT_CREATED",
    alert: { alertId: "http-1", name: "n", status: "TRIGGERED", triggeredOn: "2026-11-21T11:00:00.000Z" },
  };
  const post = (body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) =>
    fetch(`${base}/v1/alerts/events`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      duplex: "half",
    } as RequestInit);
  const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

  it("accepts a JSON body", async () => {
    const res = await post(JSON.stringify(event));
    expect(res.status).toBe(202);
  });

  it("refuses a body whose declared length passes the limit with 413", async () => {
    const res = await post(JSON.stringify({ ...event, pad: "x".repeat(2 * 1024 * 1024) }));
    expect(res.status).toBe(413);
    expect(await code(res)).toBe("PAYLOAD_TOO_LARGE");
  });

  it("refuses a chunked body (no declared length) once it passes the limit with 413", async () => {
    const piece = new TextEncoder().encode(" ".repeat(64 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 40) controller.enqueue(piece);
        else controller.close();
      },
    });
    const res = await post(stream);
    expect(res.status).toBe(413);
    expect(await code(res)).toBe("PAYLOAD_TOO_LARGE");
  });

  it("answers a body that is not JSON with 400 INVALID_JSON", async () => {
    const res = await post("{nope");
    expect(res.status).toBe(400);
    expect(await code(res)).toBe("INVALID_JSON");
  });
});

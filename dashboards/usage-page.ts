// The Usage tab: the top clients of the last 24 hours (the live counters in Redis), every client's
// last 7 days as a bar chart (the busiest CHART_CLIENTS of them), and the committed batches as
// Server-Sent Events for the page to add as they come. The usage domain does the reading; this
// only shapes it for the page, and says which part is unavailable when Redis or Postgres is down.
import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppDeps, AppEnv } from "../http/context.js";
import { AppError, isDependencyDown, serviceUnavailable } from "../lib/errors.js";
import { pageHeaders, USAGE_PAGE_PATH } from "./operator-page.js";
import { type UsageData, type UsagePageModel, usagePage, usageSection } from "./usage-page.view.js";

/** The chart shows this many clients, the busiest of the week; the page says of how many. */
export const CHART_CLIENTS = 20;
const HEARTBEAT_SECONDS = 15;

/** Redis or Postgres out of reach (the usage reads turn a double outage into a 503 AppError). */
const unavailable = (err: unknown) =>
  isDependencyDown(err) || (err instanceof AppError && err.code === "SERVICE_UNAVAILABLE");

async function loadUsage(deps: AppDeps): Promise<UsageData> {
  const { usage } = deps.services;
  const [top, daily] = await Promise.all([
    usage.top().catch((err: unknown) => {
      if (unavailable(err)) return undefined;
      throw err;
    }),
    usage.daily().catch((err: unknown) => {
      if (unavailable(err)) return undefined;
      throw err;
    }),
  ]);
  const data: UsageData = {
    // The live counters answer as "cache"; any other source means Redis did not answer.
    top: top && { clients: top.value, fromRollup: top.source !== "cache" },
    chart: undefined,
    // Live events come through Redis pub/sub.
    live: deps.redis.status === "ready",
  };
  if (daily) {
    const weeks = daily.value.map((u) => ({
      clientId: u.clientId,
      days: u.days,
      total: u.days.reduce((sum, d) => sum + d.requests, 0),
    }));
    weeks.sort((a, b) => b.total - a.total || (a.clientId < b.clientId ? -1 : 1));
    data.chart = {
      clients: weeks.slice(0, CHART_CLIENTS),
      clientCount: weeks.length,
      dates: weeks[0]?.days.map((d) => d.date) ?? lastDays(),
      today: weeks.reduce((sum, w) => sum + (w.days.at(-1)?.requests ?? 0), 0),
      week: weeks.reduce((sum, w) => sum + w.total, 0),
      ageSeconds: daily.source === "stale" ? daily.ageSeconds : undefined,
    };
  }
  return data;
}

/** The dates of the chart when no client has a row to take them from. */
function lastDays(): string[] {
  const today = Math.floor(Date.now() / 86_400_000) * 86_400_000;
  return Array.from({ length: 7 }, (_, i) =>
    new Date(today - (6 - i) * 86_400_000).toISOString().slice(0, 10),
  );
}

export function usagePageRoutes(links: UsagePageModel["links"]) {
  const routes = new Hono<AppEnv>();
  const src = { fragment: `${USAGE_PAGE_PATH}/live`, stream: `${USAGE_PAGE_PATH}/stream` };

  routes.get("/", async (c) => {
    const nonce = randomBytes(16).toString("base64");
    const data = await loadUsage(c.get("deps"));
    if (!data.chart || !data.top || !data.live)
      c.get("log").warn(
        { chart: data.chart !== undefined, top: data.top !== undefined, live: data.live },
        "usage dashboard: part of the data is unavailable",
      );
    // Like the alerts page: it loads without Postgres (503), and fills in once Postgres is back.
    const status = data.chart ? 200 : 503;
    return c.html(usagePage({ nonce, links, data, src }), status, pageHeaders(nonce));
  });

  // What the page reads again: once its stream is open, and every minute (the rolling windows).
  routes.get("/live", async (c) => {
    const data = await loadUsage(c.get("deps"));
    return c.html(usageSection(data), data.chart ? 200 : 503, pageHeaders());
  });

  // Every committed batch, of every client: what GET /api/usage/stream sends an operator, behind
  // the dashboards' login. No resume: the page reads its figures again whenever it (re)connects.
  routes.get("/stream", async (c) => {
    const { redis, services } = c.get("deps");
    if (redis.status !== "ready") throw serviceUnavailable("Redis");
    // (streamSSE sends Cache-Control: no-cache itself.) Proxies (nginx) must not buffer it.
    c.header("X-Accel-Buffering", "no");
    return streamSSE(c, async (sse) => {
      const pending: string[] = [];
      let wake: (() => void) | undefined;
      let open = true;
      sse.onAbort(() => {
        open = false;
        wake?.();
      });
      const unsubscribe = await services.usage.subscribe((event) => {
        const hits = event.counted.map((h) => ({
          client_id: h.clientId,
          hour: new Date(h.hour).toISOString(),
          added: h.hits,
        }));
        if (hits.length === 0) return;
        pending.push(JSON.stringify({ hits }));
        wake?.();
      });
      const heartbeat = setInterval(() => {
        void sse.writeSSE({ event: "heartbeat", data: "{}" });
      }, HEARTBEAT_SECONDS * 1000);
      heartbeat.unref();
      try {
        await sse.writeSSE({
          event: "ready",
          data: JSON.stringify({ heartbeat_seconds: HEARTBEAT_SECONDS }),
        });
        while (open) {
          const data = pending.shift();
          if (data !== undefined) await sse.writeSSE({ event: "usage", data });
          else await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        clearInterval(heartbeat);
        unsubscribe();
      }
    });
  });

  return routes;
}

// The operator page: alert counts, MTTA/MTTR, a per-service table, the latest alerts and queue
// depths, rendered on the server from the same queries as GET /v1/alerts and /v1/alerts/stats,
// and refreshed by the page itself about once a second.
import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import type { Redis } from "ioredis";
import type { AppDeps, AppEnv } from "../http/context.js";
import { sendError } from "../http/errors.js";
import { AppError, isDependencyDown, serviceUnavailable } from "../lib/errors.js";
import { withTimeout } from "../lib/timeout.js";
import type { QueueRegistry } from "../queues/registry.js";
import {
  DEFAULT_PAGE_SIZE,
  PAGE_SIZES,
  type PageQuery,
  parsePageQuery,
  toLocalInput,
  toSearchParams,
} from "./filters.js";
import {
  type Html,
  type LiveData,
  liveSection,
  type PageLinks,
  type PageModel,
  page,
  QUEUE_STATES,
  type QueueDepth,
} from "./operator-page.view.js";

export const OPERATOR_PAGE_PATH = "/dashboard";
/** The Usage tab (dashboards/usage-page.ts), under the operator page's path and its login. */
export const USAGE_PAGE_PATH = `${OPERATOR_PAGE_PATH}/usage`;
/** The issue asks for the page to reflect an event within a second of it. */
export const REFRESH_MS = 1000;
/** Counting takes a millisecond; this only bounds a Redis that accepts commands and never answers. */
const QUEUE_COUNTS_TIMEOUT_MS = 1_000;

/** Jobs by state in every queue of the registry (whose Queues share the `redis` connection). */
export async function queueDepths(queues: QueueRegistry, redis: Redis): Promise<QueueDepth[]> {
  // BullMQ waits for a connection that is not ready rather than failing: ask it nothing then, so
  // each refresh during an outage answers at once instead of after the timeout.
  if (redis.status !== "ready") throw serviceUnavailable("Redis");
  return Promise.all(
    queues.names.map(async (name) => {
      const counts = await withTimeout(
        queues.get(name).getJobCounts(...QUEUE_STATES),
        QUEUE_COUNTS_TIMEOUT_MS,
      ).catch((err: unknown) => {
        // A Redis that hangs rather than refuses is just as unavailable.
        throw err instanceof Error && /timed out/.test(err.message) ? serviceUnavailable("Redis") : err;
      });
      return {
        name,
        counts: Object.fromEntries(QUEUE_STATES.map((s) => [s, counts[s] ?? 0])) as QueueDepth["counts"],
      };
    }),
  );
}

async function loadLive(deps: AppDeps, query: PageQuery): Promise<LiveData> {
  const { alerts } = deps.services;
  const [stats, page, queues] = await Promise.all([
    alerts.stats(query.filters, "service"),
    alerts.list(query.filters, { limit: query.limit }),
    // Redis being down must not blank the alert figures, which come from Postgres.
    queueDepths(deps.queues, deps.redis).catch((err: unknown) => {
      if (isDependencyDown(err) || err instanceof AppError) return undefined;
      throw err;
    }),
  ]);
  return { stats, latest: page.items, queues };
}

function linksFor(query: PageQuery | undefined, bullBoardPath: string): PageLinks {
  return {
    page: OPERATOR_PAGE_PATH,
    bullBoard: bullBoardPath,
    usage: USAGE_PAGE_PATH,
    withParam(key, value) {
      const params = query ? toSearchParams(query) : new URLSearchParams();
      params.set(key, value);
      return `${OPERATOR_PAGE_PATH}?${params}`;
    },
  };
}

/**
 * The page's scripts and styles carry a per-response nonce, so an injected tag could not run
 * even if a value ever slipped past the escaping.
 */
export function pageHeaders(nonce?: string): Record<string, string> {
  const csp = [
    "default-src 'none'",
    nonce ? `script-src 'nonce-${nonce}'` : "script-src 'none'",
    nonce ? `style-src 'nonce-${nonce}'` : "style-src 'none'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return {
    "Content-Security-Policy": csp,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
  };
}

export function operatorPageRoutes(opts: { bullBoardPath: string }) {
  const routes = new Hono<AppEnv>();

  routes.get("/", async (c) => {
    const raw = c.req.query();
    const parsed = parsePageQuery(raw);
    const nonce = randomBytes(16).toString("base64");
    const query = parsed.ok ? parsed.query : undefined;
    const links = linksFor(query, opts.bullBoardPath);
    const model: PageModel = {
      nonce,
      links,
      form: parsed.ok
        ? formFrom(parsed.query)
        : {
            name: raw.name ?? "",
            service: raw.service ?? "",
            responder: raw.responder ?? "",
            status: raw.status ?? "",
            from: raw.from ?? "",
            to: raw.to ?? "",
            limit: raw.limit ?? String(DEFAULT_PAGE_SIZE),
          },
      errors: parsed.ok ? [] : parsed.errors,
      live: undefined,
      liveSrc: query ? liveUrl(query) : undefined,
      refreshMs: REFRESH_MS,
    };
    let status: 200 | 400 | 503 = parsed.ok ? 200 : 400;
    if (query) {
      try {
        model.live = liveSection(await loadLive(c.get("deps"), query), links, query.limit, PAGE_SIZES);
      } catch (err) {
        if (!isDependencyDown(err)) throw err;
        // The page still loads and keeps polling, so it recovers by itself when Postgres is back.
        c.get("log").warn({ err }, "dashboard data unavailable");
        model.unavailable = "Postgres is not answering; the figures will appear as soon as it does.";
        status = 503;
      }
    }
    return c.html(page(model), status, pageHeaders(nonce));
  });

  routes.get("/live", async (c) => {
    const parsed = parsePageQuery(c.req.query());
    if (!parsed.ok) return sendError(c, "VALIDATION_FAILED", "invalid dashboard filters", parsed.errors);
    const { query } = parsed;
    const fragment: Html = liveSection(
      await loadLive(c.get("deps"), query),
      linksFor(query, opts.bullBoardPath),
      query.limit,
      PAGE_SIZES,
    );
    return c.html(fragment, 200, pageHeaders());
  });

  routes.get("/api/queues", async (c) => {
    c.header("Cache-Control", "no-store");
    const { queues, redis } = c.get("deps");
    return c.json({ queues: await queueDepths(queues, redis) });
  });

  return routes;
}

const liveUrl = (query: PageQuery) => {
  const qs = toSearchParams(query).toString();
  return `${OPERATOR_PAGE_PATH}/live${qs ? `?${qs}` : ""}`;
};

const formFrom = (q: PageQuery): PageModel["form"] => ({
  name: q.filters.name ?? "",
  service: q.filters.service ?? "",
  responder: q.filters.responder ?? "",
  status: q.filters.status ?? "",
  from: toLocalInput(q.filters.from),
  to: toLocalInput(q.filters.to),
  limit: String(q.limit),
});

// Liveness, readiness (Redis and Postgres reachable, Redis not full) and Prometheus metrics.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Logger } from "../lib/logger.js";
import { isRedisFull, redisMemory } from "../lib/redis.js";
import { withTimeout } from "../lib/timeout.js";
import { guardedRoute, PUBLIC } from "./access.js";
import type { AppEnv } from "./context.js";
import type { Metrics } from "./metrics.js";

const CHECK_TIMEOUT_MS = 2_000;

/**
 * Runs one readiness check. /ready is unauthenticated, so a failure answers {ok, ms} only: the
 * driver's message (host names, user names) goes to the log, at warn, never to the caller.
 */
async function check(
  name: string,
  log: Logger,
  run: () => Promise<unknown>,
): Promise<{ ok: boolean; ms: number }> {
  const started = performance.now();
  try {
    await withTimeout(run(), CHECK_TIMEOUT_MS);
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    const ms = Math.round(performance.now() - started);
    log.warn({ check: name, ms, err: { message: (err as Error).message } }, "readiness check failed");
    return { ok: false, ms };
  }
}

const checkSchema = z.object({ ok: z.boolean(), ms: z.number() });
const readySchema = z.object({
  status: z.enum(["ready", "unavailable"]),
  checks: z.object({ redis: checkSchema, postgres: checkSchema }),
  anonymousAccess: z.array(z.string()).openapi({
    description:
      "The areas callers without credentials may use (ANONYMOUS_ACCESS), all in one anonymous tenant; [] when off",
  }),
});

const health = guardedRoute(PUBLIC, {
  method: "get",
  path: "/health",
  tags: ["operations"],
  summary: "Liveness: the process is up",
  responses: {
    200: {
      description: "Alive",
      content: { "application/json": { schema: z.object({ status: z.literal("ok") }) } },
    },
  },
});

const ready = guardedRoute(PUBLIC, {
  method: "get",
  path: "/ready",
  tags: ["operations"],
  summary: "Readiness: Redis and Postgres answer, and Redis is below its maxmemory",
  responses: {
    200: { description: "Ready", content: { "application/json": { schema: readySchema } } },
    503: {
      description: "A dependency is down; see Retry-After",
      content: { "application/json": { schema: readySchema } },
    },
  },
});

const metricsRoute = guardedRoute(PUBLIC, {
  method: "get",
  path: "/metrics",
  tags: ["operations"],
  summary: "Prometheus text: HTTP requests by route and status, latency histogram, queue depths by state",
  responses: {
    200: { description: "Prometheus exposition format", content: { "text/plain": { schema: z.string() } } },
  },
});

export function healthRoutes(metrics: Metrics) {
  return new OpenAPIHono<AppEnv>()
    .openapi(health, (c) => c.json({ status: "ok" as const }, 200))
    .openapi(ready, async (c) => {
      const { redis, database } = c.get("deps");
      const log = c.get("log");
      const [redisCheck, postgresCheck] = await Promise.all([
        check("redis", log, async () => {
          // A full Redis answers, but refuses every write: this replica cannot take work.
          const memory = await redisMemory(redis);
          if (isRedisFull(memory))
            throw new Error(`Redis is at its maxmemory (${memory.usedBytes} of ${memory.maxBytes} bytes)`);
        }),
        check("postgres", log, () => database.sql`select 1`),
      ]);
      const ok = redisCheck.ok && postgresCheck.ok;
      const body = {
        status: ok ? ("ready" as const) : ("unavailable" as const),
        checks: { redis: redisCheck, postgres: postgresCheck },
        anonymousAccess: c.get("deps").config.ANONYMOUS_ACCESS ?? [],
      };
      if (ok) return c.json(body, 200);
      c.header("Retry-After", "5");
      return c.json(body, 503);
    })
    .openapi(metricsRoute, async (c) => {
      const text = await metrics.registry.metrics();
      return c.text(text, 200, { "Content-Type": metrics.registry.contentType });
    });
}

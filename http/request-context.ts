// What every Conveyor HTTP app does around its routes: a request id (echoed as X-Request-Id),
// the dependencies and a request-scoped logger in the context, one access-log line and the
// HTTP metrics per request, and the one error handler and JSON 404.
import type { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import { routePath } from "hono/route";
import { randomId } from "../lib/ids.js";
import type { AppDeps, AppEnv } from "./context.js";
import { notFound, onError } from "./errors.js";
import type { Metrics } from "./metrics.js";

const QUIET_ROUTES = new Set(["/health", "/ready", "/metrics", "/dashboard/live"]);

export function installRequestContext(app: OpenAPIHono<AppEnv>, deps: AppDeps, metrics: Metrics): void {
  app.use(requestId({ generator: () => randomId("req_") }));
  app.use(async (c, next) => {
    const started = performance.now();
    const log = deps.logger.child({ requestId: c.get("requestId") });
    c.set("log", log);
    c.set("deps", deps);
    c.set("services", deps.services);
    await next();
    const seconds = (performance.now() - started) / 1000;
    const route = routePath(c);
    const caller = c.get("caller");
    metrics.observe(c.req.method, route, c.res.status, seconds);
    // Probes and the dashboard's once-a-second poll would drown the log at info when they succeed.
    const level = c.res.status < 400 && QUIET_ROUTES.has(route) ? "debug" : "info";
    // The path only: query strings can carry things that do not belong in logs.
    log[level](
      {
        method: c.req.method,
        path: c.req.path,
        route,
        status: c.res.status,
        ...(caller?.kind === "account" ? { account: caller.accountId, key: caller.keyId } : {}),
        ms: Math.round(seconds * 1e4) / 10,
      },
      "request",
    );
  });
  app.onError(onError);
  app.notFound(notFound);
}

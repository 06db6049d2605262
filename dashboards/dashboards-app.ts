// The dashboards as an app of their own (dashboards/server.ts): Bull Board, the operator page
// and the platform endpoints a process needs (/health, /ready, /metrics), and nothing that
// accepts work. The page reads Postgres and the queues itself, so no /v1 route is needed.
import { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import { routePath } from "hono/route";
import type { AppDeps, AppEnv } from "../api/context.js";
import { notFound, onError } from "../api/errors.js";
import { createMetrics } from "../api/metrics.js";
import { healthRoutes } from "../api/routes/health.js";
import { randomId } from "../lib/ids.js";
import { mountDashboards } from "./index.js";
import { OPERATOR_PAGE_PATH } from "./operator-page.js";

export function createDashboardsApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>();
  const metrics = createMetrics(deps.queues);

  // The same request context as createApp (api/app.ts), which the shared handlers expect.
  app.use(requestId({ generator: () => randomId("req_") }));
  app.use(async (c, next) => {
    const started = performance.now();
    const log = deps.logger.child({ requestId: c.get("requestId") });
    c.set("log", log);
    c.set("deps", deps);
    await next();
    const seconds = (performance.now() - started) / 1000;
    const route = routePath(c);
    metrics.observe(c.req.method, route, c.res.status, seconds);
    log.info(
      {
        method: c.req.method,
        path: c.req.path,
        route,
        status: c.res.status,
        ms: Math.round(seconds * 1e4) / 10,
      },
      "request",
    );
  });
  app.onError(onError);
  app.notFound(notFound);

  app.route("/", healthRoutes(metrics));
  app.get("/", (c) => c.redirect(OPERATOR_PAGE_PATH));
  mountDashboards(app, deps);
  return app;
}

// The dashboards as an app of their own (dashboards/server.ts): Bull Board, the operator page
// and the platform endpoints a process needs (/health, /ready, /metrics), and nothing that
// accepts work. The page reads Postgres and the queues itself, so no /v1 route is needed.

import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppDeps, AppEnv } from "../http/context.js";
import { healthRoutes } from "../http/health.routes.js";
import { createMetrics } from "../http/metrics.js";
import { installRequestContext } from "../http/request-context.js";
import { mountDashboards } from "./index.js";
import { OPERATOR_PAGE_PATH } from "./operator-page.js";

export function createDashboardsApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>();
  const metrics = createMetrics(deps.queues, deps.redis);

  installRequestContext(app, deps, metrics);

  app.route("/", healthRoutes(metrics));
  app.get("/", (c) => c.redirect(OPERATOR_PAGE_PATH));
  mountDashboards(app, deps);
  return app;
}

// Operator surfaces mounted into the API process: Bull Board at /admin/queues and the
// operator page at /dashboard, both behind HTTP Basic credentials.
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppDeps, AppEnv } from "../api/context.js";

export function mountDashboards(_app: OpenAPIHono<AppEnv>, _deps: AppDeps): void {
  // Filled in by dashboards/bull-board.ts and dashboards/operator-page.ts.
}

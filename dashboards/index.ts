// Operator surfaces mounted into the API process: Bull Board at /admin/queues and the
// operator page at /dashboard, both behind HTTP Basic credentials.
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppDeps, AppEnv } from "../api/context.js";
import { BULL_BOARD_PATH, mountBullBoard } from "./bull-board.js";
import { operatorAuth, resolveOperatorCredentials, sameOriginWrites } from "./operator-auth.js";
import { OPERATOR_PAGE_PATH, operatorPageRoutes } from "./operator-page.js";

export { BULL_BOARD_PATH } from "./bull-board.js";
export { OPERATOR_PAGE_PATH } from "./operator-page.js";

export function mountDashboards(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  const credentials = resolveOperatorCredentials(deps);
  // Said once, when the app is built: an operator reading the start-up log learns why every
  // dashboard request answers 401, without one warning per request flooding the log.
  if (!credentials.enabled)
    deps.logger.warn(
      { paths: [OPERATOR_PAGE_PATH, BULL_BOARD_PATH] },
      `${credentials.reason}; set both to open the operator dashboards`,
    );
  else if (credentials.source === "dev")
    deps.logger.info(
      { user: credentials.user, paths: [OPERATOR_PAGE_PATH, BULL_BOARD_PATH] },
      "dashboards use the dev start's generated password (ADMIN_PASSWORD is not set)",
    );

  const auth = operatorAuth(credentials);
  // `/x/*` also matches `/x` itself in Hono, so one pattern per surface covers it.
  for (const path of [OPERATOR_PAGE_PATH, BULL_BOARD_PATH]) {
    app.use(`${path}/*`, auth);
    app.use(`${path}/*`, sameOriginWrites);
  }
  app.route(OPERATOR_PAGE_PATH, operatorPageRoutes({ bullBoardPath: BULL_BOARD_PATH }));
  mountBullBoard(app, deps, OPERATOR_PAGE_PATH);
}

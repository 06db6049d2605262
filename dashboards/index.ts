// Operator surfaces mounted into the API process: Bull Board at /admin/queues and the
// operator page at /dashboard, both behind the operator login (HTTP Basic) or an ops or admin
// API key.
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Hono } from "hono";
import type { AppDeps, AppEnv } from "../http/context.js";
import {
  createFailedLoginLimit,
  operatorAuth,
  resolveOperatorCredentials,
  sameOriginWrites,
} from "./operator-auth.js";
import { OPERATOR_PAGE_PATH, operatorPageRoutes, USAGE_PAGE_PATH } from "./operator-page.js";
import { usagePageRoutes } from "./usage-page.js";

export { OPERATOR_PAGE_PATH, USAGE_PAGE_PATH } from "./operator-page.js";

export const BULL_BOARD_PATH = "/admin/queues";

export function mountDashboards(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  const credentials = resolveOperatorCredentials(deps);
  // Said once, when the app is built: an operator reading the start-up log learns why every
  // dashboard request answers 401, without one warning per request flooding the log.
  if (!credentials.enabled)
    deps.logger.warn(
      { paths: [OPERATOR_PAGE_PATH, BULL_BOARD_PATH] },
      `${credentials.reason}; only ops and admin API keys open the operator dashboards (set both to open them with a password too)`,
    );
  else if (credentials.source === "dev")
    deps.logger.info(
      { user: credentials.user, paths: [OPERATOR_PAGE_PATH, BULL_BOARD_PATH] },
      "dashboards use the dev start's generated password (ADMIN_PASSWORD is not set)",
    );

  const auth = operatorAuth(credentials, createFailedLoginLimit(deps.redis, deps.config.QUEUE_PREFIX));
  // `/x/*` also matches `/x` itself in Hono, so one pattern per surface covers it.
  for (const path of [OPERATOR_PAGE_PATH, BULL_BOARD_PATH]) {
    app.use(`${path}/*`, auth);
    app.use(`${path}/*`, sameOriginWrites);
  }
  // The Usage tab: under the operator page's path, and so behind its login.
  app.route(
    USAGE_PAGE_PATH,
    usagePageRoutes({ page: OPERATOR_PAGE_PATH, usage: USAGE_PAGE_PATH, bullBoard: BULL_BOARD_PATH }),
  );
  app.route(OPERATOR_PAGE_PATH, operatorPageRoutes({ bullBoardPath: BULL_BOARD_PATH }));
  // Bull Board is loaded and built on its first request (behind the same auth); a failed load
  // is tried again by the next one.
  let board: Promise<Hono> | undefined;
  app.all(`${BULL_BOARD_PATH}/*`, async (c) => {
    board ??= import("./bull-board.js")
      .then((m) => m.createBullBoardApp(deps, BULL_BOARD_PATH, OPERATOR_PAGE_PATH))
      .catch((err: unknown) => {
        board = undefined;
        throw err;
      });
    // A body is handed on as the app read it (a JSON body is already in Hono's cache, and Node's
    // request behind c.req.raw is spent).
    const method = c.req.method;
    const request =
      method === "GET" || method === "HEAD"
        ? c.req.raw
        : new Request(c.req.raw, { body: await c.req.arrayBuffer() });
    return (await board).fetch(request, c.env);
  });
}

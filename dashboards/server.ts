// Dashboards process entry: `npm run start:dashboards`. Serves Bull Board and the operator page
// on their own, against the same Postgres, Redis and QUEUE_PREFIX as the API.
import { loadApiConfig } from "../domains/config.js";
import { buildAppDeps, listen } from "../http/server.js";
import { createLogger } from "../lib/logger.js";
import { createShutdownRegistry, exitOnSignals } from "../lib/shutdown.js";
import { createDashboardsApp } from "./dashboards-app.js";
import { BULL_BOARD_PATH, OPERATOR_PAGE_PATH } from "./index.js";

const config = loadApiConfig();
const logger = createLogger({ level: config.LOG_LEVEL, name: "dashboards" });
const shutdown = createShutdownRegistry(logger, config.SHUTDOWN_TIMEOUT_MS);
exitOnSignals(shutdown, logger);

// No migration here: the dashboards only read, and the API (or `npm run db:migrate`) owns the schema.
const deps = buildAppDeps(config, logger, shutdown);
const app = createDashboardsApp(deps);
const { port } = await listen(app, { port: config.PORT, hostname: config.HOST }, shutdown);
logger.info(
  {
    port,
    dashboard: `http://localhost:${port}${OPERATOR_PAGE_PATH}`,
    queues: `http://localhost:${port}${BULL_BOARD_PATH}`,
  },
  "dashboards listening",
);

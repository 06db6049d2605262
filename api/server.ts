// API process entry: `npm run start:api`. Stateless; run as many replicas as you need.

import { migrateDatabase } from "../db/migrate.js";
import { loadApiConfig } from "../domains/config.js";
import { buildAppDeps, listen } from "../http/server.js";
import { createLogger } from "../lib/logger.js";
import { createShutdownRegistry, exitOnSignals } from "../lib/shutdown.js";
import { createApp } from "./app.js";

const config = loadApiConfig();
const logger = createLogger({ level: config.LOG_LEVEL, name: "api" });
const shutdown = createShutdownRegistry(logger, config.SHUTDOWN_TIMEOUT_MS);
exitOnSignals(shutdown, logger);

if (config.MIGRATE_ON_START) await migrateDatabase(config.DATABASE_URL, logger);
const deps = buildAppDeps(config, logger, shutdown);
const { port } = await listen(createApp(deps), { port: config.PORT, hostname: config.HOST }, shutdown);
logger.info(
  { port, docs: `http://localhost:${port}/docs`, dashboard: `http://localhost:${port}/dashboard` },
  "api listening",
);
// Said at every start, as /ready says it: a shared tenant anyone on the network can use.
if ((config.ANONYMOUS_ACCESS ?? []).length > 0)
  logger.warn(
    { anonymousAccess: config.ANONYMOUS_ACCESS },
    "anonymous access is ON: callers without credentials share one tenant's data in these areas",
  );

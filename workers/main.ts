// Worker process entry: `npm run start:worker`. Run it as many times as you want replicas.

import { migrateDatabase } from "../db/migrate.js";
import { loadWorkerConfig } from "../domains/config.js";
import { openConnections } from "../domains/connections.js";
import { buildServices } from "../domains/services.js";
import { createLogger } from "../lib/logger.js";
import { createShutdownRegistry, exitOnSignals } from "../lib/shutdown.js";
import { processorFactories } from "./processors.js";
import { assignQueues, startWorkers } from "./runtime.js";

const config = loadWorkerConfig();
const logger = createLogger({ level: config.LOG_LEVEL, name: "worker" });
const shutdown = createShutdownRegistry(logger, config.SHUTDOWN_TIMEOUT_MS);
exitOnSignals(shutdown, logger);

if (config.MIGRATE_ON_START) await migrateDatabase(config.DATABASE_URL, logger);
const connections = openConnections(config, logger, shutdown, "conveyor-worker");
const services = buildServices(config, connections, shutdown);
const workers = startWorkers({
  config,
  logger,
  queues: assignQueues({ config, logger, services }, processorFactories),
});
shutdown.register("workers", () => workers.close());
logger.info({ queues: config.WORKER_QUEUES, prefix: config.QUEUE_PREFIX }, "worker ready");

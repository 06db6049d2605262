// Worker process entry: `npm run start:worker`. Run it as many times as you want replicas.
import { createDatabase } from "../db/client.js";
import { migrateDatabase } from "../db/migrate.js";
import { fileStoreUrl, loadWorkerConfig } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createFileStoreRedis } from "../lib/redis.js";
import { createShutdownRegistry, exitOnSignals } from "../lib/shutdown.js";
import { processorFactories } from "./processors.js";
import { selectServices, startWorkers } from "./runtime.js";

const config = loadWorkerConfig();
const logger = createLogger({ level: config.LOG_LEVEL, name: "worker" });
const shutdown = createShutdownRegistry(logger, config.SHUTDOWN_TIMEOUT_MS);
exitOnSignals(shutdown, logger);

if (config.MIGRATE_ON_START) await migrateDatabase(config.DATABASE_URL, logger);
const database = createDatabase(config.DATABASE_URL, { max: config.DB_POOL_MAX, appName: "conveyor-worker" });
shutdown.register("database", () => database.close());
const fileStore = createFileStoreRedis(fileStoreUrl(config), logger);
shutdown.register("file store", () => fileStore.quit());
const services = selectServices({ config, logger, database, fileStore }, processorFactories);
const workers = startWorkers({ config, logger, services });
shutdown.register("workers", () => workers.close());
logger.info({ queues: config.WORKER_QUEUES, prefix: config.QUEUE_PREFIX }, "worker ready");

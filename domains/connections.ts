// The connections a process opens once and every domain's service shares: Postgres, the Redis
// producer connection and the queues over it, and the file store. Each is registered with
// shutdown, so it closes after the services built on it.
import type { Redis } from "ioredis";
import { createDatabase, type Database } from "../db/client.js";
import type { CommonConfig } from "../lib/config.js";
import type { Logger } from "../lib/logger.js";
import { createFileStoreRedis, createRedis } from "../lib/redis.js";
import type { ShutdownRegistry } from "../lib/shutdown.js";
import { createQueueRegistry, type QueueRegistry } from "../queues/registry.js";
import { type FilesConfig, fileStoreUrl } from "./files/config.js";

export interface Connections {
  logger: Logger;
  database: Database;
  /** Producer connection: fails fast while Redis is down. */
  redis: Redis;
  queues: QueueRegistry;
  /** The in-memory file store (FILE_STORE_URL): chunks and manifests of stored files. */
  fileStore: Redis;
}

export function openConnections(
  config: CommonConfig & FilesConfig,
  logger: Logger,
  shutdown: ShutdownRegistry,
  appName: string,
): Connections {
  const database = createDatabase(config.DATABASE_URL, { max: config.DB_POOL_MAX, appName });
  shutdown.register("database", () => database.close());
  const redis = createRedis(config.REDIS_URL, "producer", logger, {
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
  });
  shutdown.register("redis", () => redis.quit());
  const queues = createQueueRegistry({
    redis,
    redisUrl: config.REDIS_URL,
    prefix: config.QUEUE_PREFIX,
    logger,
    maxWaiting: config.QUEUE_MAX_WAITING,
  });
  shutdown.register("queues", () => queues.close());
  const fileStore = createFileStoreRedis(fileStoreUrl(config), logger);
  shutdown.register("file store", () => fileStore.quit());
  return { logger, database, redis, queues, fileStore };
}

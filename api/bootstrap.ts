// Builds the API's dependencies and serves an app; shared by api/server.ts and the
// all-in-one start.
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { createDatabase } from "../db/client.js";
import { type ApiConfig, fileStoreUrl } from "../lib/config.js";
import type { Logger } from "../lib/logger.js";
import { createFileStoreRedis, createRedis } from "../lib/redis.js";
import type { ShutdownRegistry } from "../lib/shutdown.js";
import { createQueueRegistry } from "../queues/registry.js";
import type { App } from "./app.js";
import type { AppDeps } from "./context.js";

export function buildApiDeps(config: ApiConfig, logger: Logger, shutdown: ShutdownRegistry): AppDeps {
  const database = createDatabase(config.DATABASE_URL, { max: config.DB_POOL_MAX, appName: "conveyor-api" });
  shutdown.register("database", () => database.close());
  const redis = createRedis(config.REDIS_URL, "producer", logger);
  shutdown.register("redis", () => redis.quit());
  const queues = createQueueRegistry({
    redis,
    redisUrl: config.REDIS_URL,
    prefix: config.QUEUE_PREFIX,
    logger,
  });
  shutdown.register("queues", () => queues.close());
  const fileStore = createFileStoreRedis(fileStoreUrl(config), logger);
  shutdown.register("file store", () => fileStore.quit());
  return { config, logger, redis, database, queues, fileStore };
}

/** Listens, and registers a close that stops new connections and lets requests in flight finish. */
export function listen(
  app: App,
  opts: { port: number; hostname: string },
  shutdown: ShutdownRegistry,
): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: opts.port, hostname: opts.hostname }, (info) => {
      resolve({ server: server as Server, port: info.port });
    }) as Server;
    server.keepAliveTimeout = 65_000;
    shutdown.register("http", async () => {
      const closed = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      await closed;
    });
  });
}

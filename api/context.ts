// What every request handler can reach through Hono's context: the process's dependencies,
// built once and passed to createApp, never imported as module singletons.
import type { Redis } from "ioredis";
import type { Database } from "../db/client.js";
import type { ApiConfig } from "../lib/config.js";
import type { Logger } from "../lib/logger.js";
import type { QueueRegistry } from "../queues/registry.js";

export interface AppDeps {
  config: ApiConfig;
  logger: Logger;
  /** Producer connection: fails fast while Redis is down. */
  redis: Redis;
  database: Database;
  queues: QueueRegistry;
  /** The in-memory file store (FILE_STORE_URL): chunks and manifests of stored files. */
  fileStore: Redis;
  /** Mount Bull Board and the operator pages (default true). */
  dashboards?: boolean;
  /** The all-in-one dev start allows the dashboards with a generated password. */
  devDashboardsPassword?: string;
}

export interface AppEnv {
  Variables: {
    requestId: string;
    log: Logger;
    deps: AppDeps;
  };
}

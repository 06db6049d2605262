// What every request handler can reach through Hono's context: the process's connections and
// domain services, built once and passed to createApp, never imported as module singletons.
import type { ApiConfig } from "../domains/config.js";
import type { Connections } from "../domains/connections.js";
import type { Caller } from "../domains/identity/caller.js";
import type { Services } from "../domains/services.js";
import type { Logger } from "../lib/logger.js";

export interface AppDeps extends Connections {
  config: ApiConfig;
  services: Services;
  /** Mount Bull Board and the operator pages (default true). */
  dashboards?: boolean;
  /** The all-in-one dev start allows the dashboards with a generated password. */
  devDashboardsPassword?: string;
}

export interface AppEnv {
  Variables: {
    requestId: string;
    log: Logger;
    /** Set by the route's access middleware (http/access.ts) before its handler runs. */
    caller: Caller;
    deps: AppDeps;
    services: Services;
  };
}

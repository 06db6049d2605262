// What an HTTP process (the API, the dashboards, the dev start) builds before serving: its
// connections and domain services (AppDeps), and the listening server, each closed at shutdown.
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import type { ApiConfig } from "../domains/config.js";
import { openConnections } from "../domains/connections.js";
import { buildServices } from "../domains/services.js";
import type { Logger } from "../lib/logger.js";
import type { ShutdownRegistry } from "../lib/shutdown.js";
import type { AppDeps } from "./context.js";

export function buildAppDeps(config: ApiConfig, logger: Logger, shutdown: ShutdownRegistry): AppDeps {
  const connections = openConnections(config, logger, shutdown, "conveyor-api");
  const services = buildServices(config, connections, shutdown);
  return { ...connections, config, services };
}

/** Listens, and registers a close that stops new connections and lets requests in flight finish. */
export function listen(
  app: { fetch: (request: Request, env: unknown) => Response | Promise<Response> },
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

// The all-in-one dev start's servers: DATABASE_URL / REDIS_URL when set; otherwise the local
// ones at DEV_POSTGRES_URL / DEV_REDIS_URL; otherwise an embedded Postgres and a private
// redis-server of its own. And the block it prints once everything listens.

import type { Logger } from "../lib/logger.js";
import type { ShutdownRegistry } from "../lib/shutdown.js";
import type { DevStartConfig } from "./config.js";
import {
  databaseOf,
  ensureDatabase,
  type PostgresProbe,
  probePostgres,
  startEmbeddedPostgres,
} from "./postgres.js";
import { type DevServer, DevStartError } from "./processes.js";
import { probeRedis, startPrivateRedis } from "./redis.js";

export interface DevServices {
  postgres: DevServer;
  redis: DevServer;
}

/** The URL with its password masked, for output a developer may paste somewhere. */
export function redactUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

async function resolveRedis(
  config: DevStartConfig,
  opts: { dataDir: string; shutdown: ShutdownRegistry },
): Promise<DevServer> {
  const url = config.REDIS_URL ?? config.DEV_REDIS_URL;
  const probe = await probeRedis(url);
  if (probe.state === "ok") return { url, origin: config.REDIS_URL ? "REDIS_URL" : "found at DEV_REDIS_URL" };
  if (config.REDIS_URL || probe.state === "refused") {
    throw new DevStartError(
      `the Redis at ${redactUrl(url)} ${probe.state === "refused" ? "refused" : "does not answer"}: ${probe.reason}. ` +
        (config.REDIS_URL ? "Check REDIS_URL." : "Set REDIS_URL to a Redis you can use."),
    );
  }
  const server = await startPrivateRedis({ dataDir: opts.dataDir, unreachable: redactUrl(url) });
  if (server.stop) opts.shutdown.register("private redis-server", server.stop);
  return server;
}

async function probeUntilSettled(url: string): Promise<PostgresProbe> {
  // A server still starting (57P03) is asked again for a few seconds before it counts as absent.
  for (let i = 0; ; i++) {
    const probe = await probePostgres(url);
    if (probe.state !== "starting" || i >= 50) return probe;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function resolvePostgres(
  config: DevStartConfig,
  opts: { dataDir: string; logger: Logger; shutdown: ShutdownRegistry },
): Promise<DevServer> {
  const url = config.DATABASE_URL ?? config.DEV_POSTGRES_URL;
  const probe = await probeUntilSettled(url);
  let server: DevServer;
  if (probe.state === "ok") {
    server = { url, origin: config.DATABASE_URL ? "DATABASE_URL" : "found at DEV_POSTGRES_URL" };
  } else if (config.DATABASE_URL || probe.state !== "absent") {
    // A server that answers and refuses belongs to the developer: starting another one in its
    // place would hide their data behind a database they did not ask for.
    const verb = probe.state === "absent" ? "does not answer" : "refused the connection";
    throw new DevStartError(
      `the Postgres at ${redactUrl(url)} ${verb}: ${probe.reason}. ` +
        (config.DATABASE_URL
          ? "Check DATABASE_URL."
          : "Set DATABASE_URL with a user and password it accepts (postgres://user:password@127.0.0.1:5432/conveyor)."),
    );
  } else {
    opts.logger.info(
      { url: redactUrl(url), reason: probe.reason },
      "no Postgres answers; starting an embedded one",
    );
    server = await startEmbeddedPostgres({
      dataDir: opts.dataDir,
      database: databaseOf(url) || "conveyor",
      logger: opts.logger,
    });
    if (server.stop) opts.shutdown.register("embedded postgres", server.stop);
  }
  if (await ensureDatabase(server.url))
    opts.logger.info({ database: databaseOf(server.url) }, "database created");
  return server;
}

/**
 * Finds or starts Postgres and Redis. What it starts is registered with `shutdown` before
 * anything else, so it closes last, after HTTP, workers and the pools that use it.
 */
export async function resolveDevServices(
  config: DevStartConfig,
  opts: { dataDir: string; logger: Logger; shutdown: ShutdownRegistry },
): Promise<DevServices> {
  // Redis first: a missing redis-server fails in a moment, before an initdb.
  const redis = await resolveRedis(config, opts);
  const postgres = await resolvePostgres(config, opts);
  return { postgres, redis };
}

export interface StartBanner {
  /** http://localhost:3000 */
  baseUrl: string;
  services: DevServices;
  workers: { queue: string; concurrency: number }[];
  /** Who may open the dashboards, as the dashboards resolve it (ADMIN_* or the dev password). */
  dashboards:
    | { enabled: true; user: string; generatedPassword?: string }
    | { enabled: false; reason: string };
  /** The admin API key made on this install's first run: printed once, never again. */
  bootstrapAdminKey?: string | undefined;
  /** The areas callers without credentials may use (ANONYMOUS_ACCESS); empty: none. */
  anonymousAccess: readonly string[];
}

/** The human-readable block `npm start` prints beside the JSON logs. */
export function formatStartBanner(b: StartBanner): string {
  const row = (label: string, value: string) => `    ${label.padEnd(12)} ${value}`;
  const serverRow = (label: string, s: DevServer) =>
    // The embedded server's password is a fixed dev one, and psql needs it; others stay masked.
    row(label, `${s.ours ? s.url : redactUrl(s.url)}  (${s.origin})`);
  const d = b.dashboards;
  const login = !d.enabled
    ? [row("Login", `none: ${d.reason}`)]
    : d.generatedPassword
      ? [
          row("Login", `${d.user} / ${d.generatedPassword}`),
          row(
            "",
            "generated for this run and shown only here; set ADMIN_USER and ADMIN_PASSWORD to choose one",
          ),
        ]
      : [row("Login", `${d.user} / the password in ADMIN_PASSWORD`)];
  const adminKey = b.bootstrapAdminKey
    ? [
        row("Admin key", b.bootstrapAdminKey),
        row("", "made on this first run and shown only here: keep it (X-API-Key or Authorization: Bearer)"),
      ]
    : [row("Admin key", "made on the first run; `npm run keys -- create --role admin` makes another")];
  const anonymous =
    b.anonymousAccess.length > 0
      ? row(
          "Anonymous",
          `ON for ${b.anonymousAccess.join(", ")} (one shared tenant); ANONYMOUS_ACCESS= turns it off`,
        )
      : row("Anonymous", "off: every /v1 request needs a key or token");
  return [
    "",
    "  Conveyor is running: the API, the workers and the dashboards, in this one process.",
    "",
    row("API", `${b.baseUrl}/v1`),
    row("API docs", `${b.baseUrl}/docs`),
    row("Bull Board", `${b.baseUrl}/admin/queues`),
    row("Dashboard", `${b.baseUrl}/dashboard`),
    row("Metrics", `${b.baseUrl}/metrics`),
    row("Readiness", `${b.baseUrl}/ready`),
    "",
    ...login,
    ...adminKey,
    anonymous,
    "",
    serverRow("Postgres", b.services.postgres),
    serverRow("Redis", b.services.redis),
    row("Workers", b.workers.map((w) => `${w.queue} (concurrency ${w.concurrency})`).join(", ")),
    "",
    "  Ctrl-C stops everything.",
    "",
    "",
  ].join("\n");
}

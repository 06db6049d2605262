// `npm start`: the API, the workers for every queue and the dashboards in one process, for a
// laptop or a demo (production runs them apart). Zero setup: it finds Postgres and Redis, or
// starts its own (dev/services.ts), creates the database, migrates, and prints where
// everything is.
import { randomBytes } from "node:crypto";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createApp } from "../api/app.js";
import { resolveOperatorCredentials } from "../dashboards/operator-auth.js";
import { migrateDatabase } from "../db/migrate.js";
import { loadAllInOneConfig } from "../domains/config.js";
import { openConnections } from "../domains/connections.js";
import { COMMAND_LINE_ACTOR } from "../domains/identity/service.js";
import { buildServices } from "../domains/services.js";
import { buildAppDeps, listen } from "../http/server.js";
import { createLogger } from "../lib/logger.js";
import { createShutdownRegistry, exitOnSignals } from "../lib/shutdown.js";
import { processorFactories } from "../workers/processors.js";
import { assignQueues, startWorkers } from "../workers/runtime.js";
import { loadDevStartConfig } from "./config.js";
import { keptSecrets } from "./kept-secrets.js";
import { DevStartError, isPortFree } from "./processes.js";
import { formatStartBanner, redactUrl, resolveDevServices } from "./services.js";

// sysexits EX_UNAVAILABLE: a server it needs is missing and it could not start one.
const EXIT_UNAVAILABLE = 69;
// sysexits EX_CONFIG: what it keeps in its data dir is unreadable.
const EXIT_CONFIG = 78;
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

const dev = loadDevStartConfig();
const dataDir = isAbsolute(dev.DEV_DATA_DIR) ? dev.DEV_DATA_DIR : resolve(REPO_ROOT, dev.DEV_DATA_DIR);
// The install's secrets salt and seal key, unless the environment sets them: a restart opens
// the records and the queued stores of the last run.
const kept = await keptSecrets(dataDir).catch((err: unknown) => {
  process.stderr.write(`\nconveyor: cannot start: ${(err as Error).message}\n\n`);
  process.exit(EXIT_CONFIG);
});
// Parsed now with the URLs it will try, so a bad variable stops the start before any server
// is started; parsed again below with the URLs it ends up using.
const planned = loadAllInOneConfig(
  { DATABASE_URL: dev.DATABASE_URL ?? dev.DEV_POSTGRES_URL, REDIS_URL: dev.REDIS_URL ?? dev.DEV_REDIS_URL },
  kept.secrets,
);
const logger = createLogger({ level: planned.LOG_LEVEL, name: "conveyor" });
if (kept.created) logger.info({ file: kept.file }, "made the server keys of this install");
const shutdown = createShutdownRegistry(logger, planned.SHUTDOWN_TIMEOUT_MS);
exitOnSignals(shutdown, logger);
// Closing the terminal sends SIGHUP, whose default ends Node at once; the servers this start
// launched run in sessions of their own and would outlive it.
process.once("SIGHUP", () => {
  void shutdown.shutdown("SIGHUP").then((clean) => process.exit(clean ? 0 : 1));
});

try {
  if (planned.PORT !== 0 && !(await isPortFree(planned.PORT, planned.HOST))) {
    throw new DevStartError(`port ${planned.PORT} is in use on ${planned.HOST}; set PORT to another one`);
  }
  const services = await resolveDevServices(dev, { dataDir, logger, shutdown });
  const config = loadAllInOneConfig(
    { DATABASE_URL: services.postgres.url, REDIS_URL: services.redis.url },
    kept.secrets,
  );
  if (config.MIGRATE_ON_START) await migrateDatabase(config.DATABASE_URL, logger);

  // No credentials configured: the dashboards still open, with a password made for this run
  // and shown once below, rather than left open or left off.
  const generatedPassword =
    config.ADMIN_PASSWORD === undefined ? randomBytes(12).toString("base64url") : undefined;
  const deps = { ...buildAppDeps(config, logger, shutdown), devDashboardsPassword: generatedPassword };
  // Printed as the dashboards themselves decide it, so the block cannot promise another login.
  const credentials = resolveOperatorCredentials(deps);

  // The first run makes an admin account and key, printed once below, as the dashboard password.
  const bootstrap = await deps.services.identity.bootstrapAdmin(COMMAND_LINE_ACTOR);
  if (bootstrap)
    logger.info({ accountId: bootstrap.account.id, keyId: bootstrap.key.id }, "made the first admin key");

  // Connections and services of their own, as in a worker process: a burst of API requests
  // cannot starve the workers.
  const workerConnections = openConnections(config, logger, shutdown, "conveyor-worker");
  const workerServices = buildServices(config, workerConnections, shutdown);
  const assigned = assignQueues({ config, logger, services: workerServices }, processorFactories);
  const workers = startWorkers({ config, logger, queues: assigned });
  shutdown.register("workers", () => workers.close());

  const { port } = await listen(createApp(deps), { port: config.PORT, hostname: config.HOST }, shutdown);
  const host = ["0.0.0.0", "::", ""].includes(config.HOST)
    ? "localhost"
    : config.HOST.includes(":")
      ? `[${config.HOST}]`
      : config.HOST;
  const baseUrl = `http://${host}:${port}`;
  logger.info(
    {
      url: baseUrl,
      postgres: redactUrl(config.DATABASE_URL),
      redis: redactUrl(config.REDIS_URL),
      queues: config.WORKER_QUEUES,
      prefix: config.QUEUE_PREFIX,
    },
    "conveyor started (api, workers, dashboards)",
  );
  process.stdout.write(
    formatStartBanner({
      baseUrl,
      services,
      workers: assigned.map((s) => ({ queue: s.queue, concurrency: s.concurrency })),
      dashboards: credentials.enabled
        ? {
            enabled: true,
            user: credentials.user,
            generatedPassword: credentials.source === "dev" ? credentials.password : undefined,
          }
        : { enabled: false, reason: credentials.reason },
      bootstrapAdminKey: bootstrap?.secret,
      anonymousAccess: config.ANONYMOUS_ACCESS ?? [],
    }),
  );
} catch (err) {
  if (err instanceof DevStartError) process.stderr.write(`\nconveyor: cannot start: ${err.message}\n\n`);
  else logger.fatal({ err }, "start failed");
  // Stops whatever did start (an embedded Postgres, a private redis-server) before leaving.
  await shutdown.shutdown("start failed");
  logger.flush();
  process.exit(err instanceof DevStartError ? EXIT_UNAVAILABLE : 1);
}

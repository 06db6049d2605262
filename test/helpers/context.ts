// A whole app against a database and a queue prefix of its own: createApp with real
// Postgres and Redis, and (optionally) the real workers in this process.
import { Writable } from "node:stream";
import { type App, createApp } from "../../api/app.js";
import {
  type ApiConfig,
  apiConfigSchema,
  type WorkerConfig,
  withConcurrency,
  workerConfigSchema,
} from "../../domains/config.js";
import type { Role } from "../../domains/identity/caller.js";
import { type AccountView, COMMAND_LINE_ACTOR } from "../../domains/identity/service.js";
import { buildServices } from "../../domains/services.js";
import type { AppDeps } from "../../http/context.js";
import { buildAppDeps } from "../../http/server.js";
import { loadTestEnv, parseConfig } from "../../lib/config.js";
import { createLogger, type Logger } from "../../lib/logger.js";
import { deleteKeys, waitForRedis } from "../../lib/redis.js";
import { createShutdownRegistry } from "../../lib/shutdown.js";
import { processorFactories } from "../../workers/processors.js";
import { assignQueues, type RunningWorkers, startWorkers } from "../../workers/runtime.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { uniquePrefix } from "./prefixes.js";
import { trackWorker } from "./workers.js";

export { uniquePrefix };

/** Log lines captured in memory, for tests that assert what is (and is not) logged. */
export function captureLogs(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  return { stream, lines };
}

/** A fixed JOB_SEAL_KEY for tests (random bytes, used nowhere else): secrets need one. */
export const TEST_SEAL_KEY = "ro3j0hWgEnXPoaSB1qHPGp5WAL9va2umGsnB5rXaVWo=";

/** Fixed identity keys for tests (random bytes, used nowhere else): the API needs them. */
export const TEST_IDENTITY_ENV = {
  API_KEY_HASH_KEY: "8Jw0p1mC0GqKXc1qvUo2s1Q7wLxY3c9QHk0vN2m5T4E=",
  ACCOUNT_DATA_KEY: "Qn4h5VvXr8m2p0sK7c1Zt9yWb3d6fG8jL2oR5uA1eI0=",
  JWT_SIGNING_KEY: "c2Vjb25kLXRlc3Qta2V5LWZvci1qd3Qtc2lnbmluZyE=",
} as const;

/** An account made for a test, with its one API key and the headers that present it. */
export interface TestAccount {
  account: AccountView;
  keyId: string;
  secret: string;
  headers: { "X-API-Key": string };
}

export interface TestContext {
  app: App;
  deps: AppDeps;
  db: TestDatabase;
  prefix: string;
  env: Record<string, string>;
  logs: string[];
  logger: Logger;
  workerConfig: WorkerConfig;
  /** A new account of `role` with an API key, made as the keys command would. */
  account(role: Role, fields?: { name?: string; email?: string }): Promise<TestAccount>;
  /** Starts the real workers in this process (all queues unless told otherwise). */
  startWorkers(overrides?: Record<string, string>): RunningWorkers;
  close(): Promise<void>;
}

export async function createTestContext(overrides: Record<string, string> = {}): Promise<TestContext> {
  const testEnv = loadTestEnv();
  const db = await createTestDatabase();
  const prefix = uniquePrefix();
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: testEnv.TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: "info",
    MIGRATE_ON_START: "false",
    JOB_SEAL_KEY: TEST_SEAL_KEY,
    ...TEST_IDENTITY_ENV,
    // The seeds' clients send no credentials; tests of accounts use ctx.account().
    ANONYMOUS_ACCESS: "secrets,files",
    // app.request() has no socket: every test's registrations come from one address, "unknown".
    USAGE_REGISTRATIONS_PER_ADDRESS_PER_HOUR: "100000",
    ...overrides,
  };
  const config: ApiConfig = parseConfig(apiConfigSchema, env);
  const { stream, lines } = captureLogs();
  const logger = createLogger({ level: config.LOG_LEVEL, name: "test" }, stream);
  const shutdown = createShutdownRegistry(logger, 10_000);
  const deps = buildAppDeps(config, logger, shutdown);
  await waitForRedis(deps.redis);
  const app = createApp(deps);
  const workerConfig = withConcurrency(parseConfig(workerConfigSchema, env));
  const running: RunningWorkers[] = [];
  return {
    app,
    deps,
    db,
    prefix,
    env,
    logs: lines,
    logger,
    workerConfig,
    async account(role, fields = {}) {
      const made = await deps.services.identity.createAccount(COMMAND_LINE_ACTOR, {
        role,
        name: fields.name ?? `test ${role}`,
        email: fields.email,
        withKey: { name: "test" },
      });
      const secret = made.secret as string;
      return {
        account: made.account,
        keyId: made.key?.id as string,
        secret,
        headers: { "X-API-Key": secret },
      };
    },
    startWorkers(workerOverrides = {}) {
      const cfg = withConcurrency(parseConfig(workerConfigSchema, { ...env, ...workerOverrides }));
      // Services of the workers' own, from the workers' config, over the app's connections.
      const services = buildServices(cfg, deps, shutdown);
      const workers = startWorkers({
        config: cfg,
        logger,
        queues: assignQueues({ config: cfg, logger, services }, processorFactories),
      });
      for (const w of workers.workers) trackWorker(w);
      running.push(workers);
      return workers;
    },
    async close() {
      await Promise.allSettled(running.map((w) => w.close()));
      await Promise.allSettled(deps.queues.names.map((n) => deps.queues.get(n).obliterate({ force: true })));
      // Everything else the app kept under its prefix too (idempotency slots, counters, files).
      await deleteKeys(deps.redis, `${prefix}:*`).catch(() => {});
      await shutdown.shutdown("test done");
      await db.drop();
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${lastError ? `: ${String(lastError)}` : ""}`);
}

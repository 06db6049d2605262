// Configuration for every process: one zod schema per process, parsed once at start.
// This is the only module that reads process.env.
import { z } from "zod";
import { QUEUE_NAMES, type QueueName } from "../queues/names.js";
import { decodeKey, generateKey } from "./crypto.js";

const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

const port = z.coerce.number().int().min(0).max(65535);

const common = {
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }),
  DB_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  REDIS_URL: z.url({ protocol: /^rediss?$/ }),
  // Wrap it in braces (`{conveyor}`) to make every queue key share one Redis Cluster hash slot.
  QUEUE_PREFIX: z
    .string()
    .regex(/^[{}\w.-]+$/, "letters, digits, _ . - and {} for a cluster hash tag")
    .default("conveyor"),
  MIGRATE_ON_START: bool.default(true),
  // Graceful-shutdown deadline of every process (API, dashboards, worker, all-in-one).
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
};

const http = {
  PORT: port.default(3000),
  HOST: z.string().min(1).default("0.0.0.0"),
  BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  ADMIN_USER: z.string().min(1).optional(),
  ADMIN_PASSWORD: z.string().min(8, "at least 8 characters").optional(),
  ALERTS_INGEST_TOKEN: z.string().min(16, "at least 16 characters").optional(),
};

// The in-memory file store (files domain), read by the API (streams) and the worker (verification).
const files = {
  // Defaults to REDIS_URL: see fileStoreUrl().
  FILE_STORE_URL: z.url({ protocol: /^rediss?$/ }).optional(),
  // One chunk is one Redis value, and a Redis value holds at most 512 MiB.
  FILE_CHUNK_SIZE: z.coerce
    .number()
    .int()
    .min(1024)
    .max(512 * 1024 * 1024)
    .default(10_000_000),
  FILE_PARALLELISM: z.coerce.number().int().min(1).max(64).default(4),
  FILE_TTL_SECONDS: z.coerce.number().int().min(1).default(86_400),
  FILE_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(8 * 1024 ** 3),
};

/** The file store's URL: FILE_STORE_URL, else the queues' Redis. */
export const fileStoreUrl = (c: { FILE_STORE_URL?: string | undefined; REDIS_URL: string }): string =>
  c.FILE_STORE_URL ?? c.REDIS_URL;

const isSealKey = (v: string) => {
  try {
    return decodeKey(v).length === 32;
  } catch {
    return false;
  }
};

// The secrets domain: the API seals stores and decrypts retrievals; the `encryption` worker
// opens the seals and encrypts. See docs-secrets.md.
const secrets = {
  // base64 of 32 random bytes (`openssl rand -base64 32`): seals job payloads that carry secrets.
  // Optional in the schemas so tools and tests parse configs without it; required of every
  // process that serves secrets (requireSecretsConfig).
  JOB_SEAL_KEY: z.string().refine(isSealKey, "must be base64 of exactly 32 bytes").optional(),
  // The deployment's scrypt salt for clients' keys. Set it once: records stored under another
  // salt no longer open. Required in production; a fixed public salt is used elsewhere.
  SECRETS_KDF_SALT: z.string().min(16, "at least 16 characters").optional(),
  SECRETS_MAX_VALUE_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(1024 * 1024),
  SECRETS_MAX_MATCHES: z.coerce.number().int().min(1).max(100_000).default(1_000),
  SECRETS_FAILED_DECRYPT_LIMIT: z.coerce.number().int().min(1).default(20),
  SECRETS_FAILED_DECRYPT_WINDOW_SECONDS: z.coerce.number().int().min(1).default(60),
  // Master keys derived from clients' keys, kept in memory (0 disables the cache).
  SECRETS_KEY_CACHE_MAX: z.coerce.number().int().min(0).default(1_000),
  SECRETS_KEY_CACHE_TTL_SECONDS: z.coerce.number().int().min(0).max(3_600).default(60),
};

// WORKER_CONCURRENCY_ALERT_INGESTION=200 and so on: one variable per queue.
const concurrencyVar = (queue: QueueName) => `WORKER_CONCURRENCY_${queue.toUpperCase().replace(/-/g, "_")}`;
const DEFAULT_CONCURRENCY: Record<QueueName, number> = {
  "alert-ingestion": 256,
  // Each verification already reads FILE_PARALLELISM chunks at once and hashes on this core.
  "chunk-hashing": 2,
  // Stores are mostly waiting (for the scrypt thread pool, or for their group commit).
  encryption: 64,
};

const worker = {
  WORKER_QUEUES: z
    .string()
    .default("all")
    .transform((raw, ctx) => {
      if (raw.trim() === "all" || raw.trim() === "") return [...QUEUE_NAMES];
      const names = raw.split(",").map((s) => s.trim());
      const unknown = names.filter((n) => !(QUEUE_NAMES as readonly string[]).includes(n));
      if (unknown.length > 0) {
        ctx.addIssue({
          code: "custom",
          message: `unknown queue(s) ${unknown.join(", ")}; known: ${QUEUE_NAMES.join(", ")}`,
        });
        return z.NEVER;
      }
      return names as QueueName[];
    }),
  ALERTS_BATCH_MAX: z.coerce.number().int().min(1).max(5000).default(500),
  ...Object.fromEntries(
    QUEUE_NAMES.map((q) => [
      concurrencyVar(q),
      z.coerce.number().int().min(1).max(5000).default(DEFAULT_CONCURRENCY[q]),
    ]),
  ),
};

export const apiConfigSchema = z.object({ ...common, ...http, ...files, ...secrets });
export const workerConfigSchema = z.object({ ...common, ...worker, ...files, ...secrets });
export const allInOneConfigSchema = z.object({ ...common, ...http, ...worker, ...files, ...secrets });

export type ApiConfig = z.infer<typeof apiConfigSchema>;
export type WorkerConfig = z.infer<typeof workerConfigSchema> & { concurrency: Record<QueueName, number> };
export type AllInOneConfig = ApiConfig & WorkerConfig;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Parses `env` against `schema`; throws a ConfigError naming every bad variable. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
): z.infer<S> {
  // `VAR=` (as compose's `${VAR:-}` produces) means unset, not an invalid empty value.
  const result = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== "")));
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(env)"}: ${i.message}`);
  throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
}

export function withConcurrency<T extends z.infer<typeof workerConfigSchema>>(
  c: T,
): T & { concurrency: Record<QueueName, number> } {
  const source = c as unknown as Record<string, number>;
  const concurrency = Object.fromEntries(
    QUEUE_NAMES.map((q) => [q, source[concurrencyVar(q)] ?? 1]),
  ) as Record<QueueName, number>;
  return { ...c, concurrency };
}

/** Loads a process's config from process.env, or prints what is wrong and exits with status 78 (EX_CONFIG). */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  overrides: Record<string, string | undefined> = {},
): z.infer<S> {
  try {
    return parseConfig(schema, { ...process.env, ...overrides });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
}

/** What a process serving secrets lacks: JOB_SEAL_KEY, and in production SECRETS_KDF_SALT. */
export function secretsConfigIssues(c: {
  NODE_ENV: string;
  JOB_SEAL_KEY?: string | undefined;
  SECRETS_KDF_SALT?: string | undefined;
}): string[] {
  const issues: string[] = [];
  if (c.JOB_SEAL_KEY === undefined)
    issues.push("JOB_SEAL_KEY: required (base64 of 32 random bytes: openssl rand -base64 32)");
  if (c.NODE_ENV === "production" && c.SECRETS_KDF_SALT === undefined)
    issues.push("SECRETS_KDF_SALT: required in production (16+ random characters, never changed)");
  return issues;
}

/** Exits like loadConfig when a process that serves secrets (`serves`) lacks their keys. */
function requireSecretsConfig<C extends Parameters<typeof secretsConfigIssues>[0]>(c: C, serves: boolean): C {
  const issues = serves ? secretsConfigIssues(c) : [];
  if (issues.length > 0) {
    process.stderr.write(`invalid configuration:\n${issues.map((i) => `  ${i}`).join("\n")}\n`);
    process.exit(78);
  }
  return c;
}

// The API always serves /v1/secrets; a worker only when it serves the `encryption` queue.
export const loadApiConfig = (overrides?: Record<string, string | undefined>): ApiConfig =>
  requireSecretsConfig(loadConfig(apiConfigSchema, overrides), true);
export const loadWorkerConfig = (overrides?: Record<string, string | undefined>): WorkerConfig => {
  const c = withConcurrency(loadConfig(workerConfigSchema, overrides));
  return requireSecretsConfig(c, c.WORKER_QUEUES.includes("encryption"));
};
export const loadAllInOneConfig = (overrides?: Record<string, string | undefined>): AllInOneConfig => {
  const c = withConcurrency(loadConfig(allInOneConfigSchema, overrides));
  // One process both seals and opens, so outside production a key made for this run works
  // (stores still queued when it stops do not open after a restart: set JOB_SEAL_KEY to keep them).
  if (c.JOB_SEAL_KEY === undefined && c.NODE_ENV !== "production") c.JOB_SEAL_KEY = generateKey();
  return requireSecretsConfig(c, true);
};

/**
 * `npm start` (start-all.ts) reads these before the all-in-one config: where to look for
 * Postgres and Redis when DATABASE_URL / REDIS_URL are unset (nothing answering there: it starts
 * its own), and where the servers it starts keep their data (relative paths: from the repo root).
 */
export const devStartConfigSchema = z.object({
  DATABASE_URL: common.DATABASE_URL.optional(),
  REDIS_URL: common.REDIS_URL.optional(),
  DEV_POSTGRES_URL: z
    .url({ protocol: /^postgres(ql)?$/ })
    .default("postgres://postgres@127.0.0.1:5432/conveyor"),
  DEV_REDIS_URL: z.url({ protocol: /^rediss?$/ }).default("redis://127.0.0.1:6379"),
  DEV_DATA_DIR: z.string().min(1).default(".data"),
});
export type DevStartConfig = z.infer<typeof devStartConfigSchema>;
export const loadDevStartConfig = (): DevStartConfig => loadConfig(devStartConfigSchema);

/** For what spawns child processes (their PATH, their environment); config goes through the schemas. */
export const rawEnv = (name: string): string | undefined => process.env[name];
export const inheritedEnv = (): Record<string, string | undefined> => ({ ...process.env });

/** Where the test suite and the benchmarks find their servers (defaults: this machine's). */
export const testEnvSchema = z.object({
  TEST_PG_URL: z.url().default("postgres://postgres@127.0.0.1:5432/postgres"),
  TEST_REDIS_URL: z.url().default("redis://127.0.0.1:6379"),
  CI: z.string().optional(),
});
export const loadTestEnv = () => parseConfig(testEnvSchema, process.env);

// Configuration for every process: one zod schema per process, parsed once at start.
// This is the only module that reads process.env.
import { z } from "zod";
import { QUEUE_NAMES, type QueueName } from "../queues/names.js";

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

// WORKER_CONCURRENCY_ALERT_INGESTION=200 and so on: one variable per queue.
const concurrencyVar = (queue: QueueName) => `WORKER_CONCURRENCY_${queue.toUpperCase().replace(/-/g, "_")}`;
const DEFAULT_CONCURRENCY: Record<QueueName, number> = { "alert-ingestion": 256 };

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
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
  ALERTS_BATCH_MAX: z.coerce.number().int().min(1).max(5000).default(500),
  ...Object.fromEntries(
    QUEUE_NAMES.map((q) => [
      concurrencyVar(q),
      z.coerce.number().int().min(1).max(5000).default(DEFAULT_CONCURRENCY[q]),
    ]),
  ),
};

export const apiConfigSchema = z.object({ ...common, ...http });
export const workerConfigSchema = z.object({ ...common, ...worker });
export const allInOneConfigSchema = z.object({ ...common, ...http, ...worker });

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
  const result = schema.safeParse(env);
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

export const loadApiConfig = (overrides?: Record<string, string | undefined>): ApiConfig =>
  loadConfig(apiConfigSchema, overrides);
export const loadWorkerConfig = (overrides?: Record<string, string | undefined>): WorkerConfig =>
  withConcurrency(loadConfig(workerConfigSchema, overrides));
export const loadAllInOneConfig = (overrides?: Record<string, string | undefined>): AllInOneConfig =>
  withConcurrency(loadConfig(allInOneConfigSchema, overrides));

/** The raw environment, for the all-in-one start that fills in defaults before parsing. */
export const rawEnv = (name: string): string | undefined => process.env[name];

/** Where the test suite and the benchmarks find their servers (defaults: this machine's). */
export const testEnvSchema = z.object({
  TEST_PG_URL: z.url().default("postgres://postgres@127.0.0.1:5432/postgres"),
  TEST_REDIS_URL: z.url().default("redis://127.0.0.1:6379"),
  CI: z.string().optional(),
});
export const loadTestEnv = () => parseConfig(testEnvSchema, process.env);

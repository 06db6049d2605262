// The configuration core: the platform's settings every process shares (zod shapes), parsing
// and loading. This is the only module that reads process.env; the per-process schemas, which
// add each domain's fragment, are composed in domains/config.ts.
import { z } from "zod";
import { addressListConfig } from "./cidr.js";

export const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

const port = z.coerce.number().int().min(0).max(65535);

/** Every process: where Postgres and Redis are, the queue prefix, logging, shutdown. */
export const commonConfig = {
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
  // Longest wait for one Redis command on the producer connection (the API's requests, the
  // services' reads and writes): a frozen Redis then answers 503, not a request held forever.
  REDIS_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2_000),
  // Jobs that may wait to run per queue (waiting, delayed, prioritized, paused); beyond, new
  // submissions answer 503, so producers cannot fill Redis while workers fall behind.
  QUEUE_MAX_WAITING: z.coerce.number().int().min(1).default(1_000_000),
  MIGRATE_ON_START: bool.default(true),
  // Graceful-shutdown deadline of every process (API, dashboards, worker, all-in-one).
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
};

/** Processes that serve HTTP (the API, the dashboards, the all-in-one start). */
export const httpConfig = {
  PORT: port.default(3000),
  HOST: z.string().min(1).default("0.0.0.0"),
  BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  ADMIN_USER: z.string().min(1).optional(),
  ADMIN_PASSWORD: z.string().min(8, "at least 8 characters").optional(),
  // Proxies (addresses, CIDR blocks) whose X-Forwarded-For is believed; unset: none, and every
  // limit and allowlist keys on the TCP peer's address.
  TRUSTED_PROXIES: addressListConfig().optional(),
};

/** The values of a record of zod shapes. */
export type ConfigOf<S extends z.ZodRawShape> = z.infer<z.ZodObject<S>>;
export type CommonConfig = ConfigOf<typeof commonConfig>;
export type HttpConfig = ConfigOf<typeof httpConfig>;

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

/** Prints what is wrong and exits with status 78 (EX_CONFIG). */
export function exitOnConfigIssues(issues: string[]): void {
  if (issues.length === 0) return;
  process.stderr.write(`invalid configuration:\n${issues.map((i) => `  ${i}`).join("\n")}\n`);
  process.exit(78);
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

/** For what spawns child processes (their PATH, their environment); config goes through the schemas. */
export const rawEnv = (name: string): string | undefined => process.env[name];
export const inheritedEnv = (): Record<string, string | undefined> => ({ ...process.env });

/** Where the test suite and the benchmarks find their servers (defaults: this machine's). */
export const testEnvSchema = z.object({
  TEST_PG_URL: z.url().default("postgres://postgres@127.0.0.1:5432/postgres"),
  TEST_REDIS_URL: z.url().default("redis://127.0.0.1:6379"),
  /** The Chromium the browser tests drive; unset: the usual install places are tried. */
  CHROMIUM_PATH: z.string().optional(),
  CI: z.string().optional(),
});
export const loadTestEnv = () => parseConfig(testEnvSchema, process.env);

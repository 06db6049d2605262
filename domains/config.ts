// The configuration of every process, composed once: the platform's shapes (lib/config.ts, the
// only reader of process.env), each domain's fragment, and the worker's queue selection. A new
// domain adds its fragment to `domainsConfig`; every process then parses and documents it.
import { z } from "zod";
import { type ConfigOf, commonConfig, exitOnConfigIssues, httpConfig, loadConfig } from "../lib/config.js";
import { QUEUE_NAMES, type QueueName } from "../queues/names.js";
import { alertsConfig } from "./alerts/config.js";
import { filesConfig } from "./files/config.js";
import { identityConfig, identityConfigIssues } from "./identity/config.js";
import { notificationsConfig, notificationsWorkerConfigIssues } from "./notifications/config.js";
import { secretsConfig, secretsConfigIssues } from "./secrets/config.js";
import { usageConfig } from "./usage/config.js";

export const domainsConfig = {
  ...alertsConfig,
  ...filesConfig,
  ...identityConfig,
  ...notificationsConfig,
  ...secretsConfig,
  ...usageConfig,
};

// WORKER_CONCURRENCY_ALERT_INGESTION=200 and so on: one variable per queue.
const concurrencyVar = (queue: QueueName) => `WORKER_CONCURRENCY_${queue.toUpperCase().replace(/-/g, "_")}`;
const DEFAULT_CONCURRENCY: Record<QueueName, number> = {
  "alert-ingestion": 256,
  // Each verification already reads FILE_PARALLELISM chunks at once and hashes on this core.
  "chunk-hashing": 2,
  // Stores are mostly waiting (for the scrypt thread pool, or for their group commit).
  encryption: 64,
  // Jobs carry up to 1,000 hits, and concurrent ones share one statement (group commit).
  "log-batching": 16,
  notifications: 32,
};

const workerConfig = {
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
  ...Object.fromEntries(
    QUEUE_NAMES.map((q) => [
      concurrencyVar(q),
      z.coerce.number().int().min(1).max(5000).default(DEFAULT_CONCURRENCY[q]),
    ]),
  ),
};

export const apiConfigSchema = z.object({ ...commonConfig, ...httpConfig, ...domainsConfig });
export const workerConfigSchema = z.object({ ...commonConfig, ...workerConfig, ...domainsConfig });
export const allInOneConfigSchema = z.object({
  ...commonConfig,
  ...httpConfig,
  ...workerConfig,
  ...domainsConfig,
});

/** What every domain's service is built from (buildServices). */
export type DomainsConfig = ConfigOf<typeof commonConfig> & ConfigOf<typeof domainsConfig>;
export type ApiConfig = z.infer<typeof apiConfigSchema>;
export type WorkerConfig = z.infer<typeof workerConfigSchema> & { concurrency: Record<QueueName, number> };
export type AllInOneConfig = ApiConfig & WorkerConfig;

export function withConcurrency<T extends z.infer<typeof workerConfigSchema>>(
  c: T,
): T & { concurrency: Record<QueueName, number> } {
  const source = c as unknown as Record<string, number>;
  const concurrency = Object.fromEntries(
    QUEUE_NAMES.map((q) => [q, source[concurrencyVar(q)] ?? 1]),
  ) as Record<QueueName, number>;
  return { ...c, concurrency };
}

// The API always serves /v1/secrets and authenticates callers; a worker serves secrets only when
// it serves the `encryption` queue, signs webhooks only when it serves `notifications`, and
// authenticates no one.
export const loadApiConfig = (overrides?: Record<string, string | undefined>): ApiConfig => {
  const c = loadConfig(apiConfigSchema, overrides);
  exitOnConfigIssues([...secretsConfigIssues(c), ...identityConfigIssues(c)]);
  return c;
};
export const loadWorkerConfig = (overrides?: Record<string, string | undefined>): WorkerConfig => {
  const c = withConcurrency(loadConfig(workerConfigSchema, overrides));
  exitOnConfigIssues([
    ...(c.WORKER_QUEUES.includes("encryption") ? secretsConfigIssues(c) : []),
    ...(c.WORKER_QUEUES.includes("notifications") ? notificationsWorkerConfigIssues(c) : []),
  ]);
  return c;
};
/** The server keys the all-in-one start keeps in its data dir (dev/kept-secrets.ts). */
export const KEPT_KEY_NAMES = [
  "JOB_SEAL_KEY",
  "SECRETS_KDF_SALT",
  "API_KEY_HASH_KEY",
  "ACCOUNT_DATA_KEY",
  "JWT_SIGNING_KEY",
] as const;
export type KeptKeys = Partial<Pick<AllInOneConfig, (typeof KEPT_KEY_NAMES)[number]>>;

/**
 * The all-in-one start's config. Outside production, what the start keeps in its data dir
 * (`kept`) stands in for the server keys the environment leaves unset, and anonymous callers may
 * use secrets and files (the seeds' clients send no credentials) unless ANONYMOUS_ACCESS says
 * otherwise.
 */
export const loadAllInOneConfig = (
  overrides: Record<string, string | undefined> = {},
  kept: KeptKeys = {},
): AllInOneConfig => {
  const c = withConcurrency(loadConfig(allInOneConfigSchema, overrides));
  if (c.NODE_ENV !== "production") {
    for (const name of KEPT_KEY_NAMES) c[name] ??= kept[name];
    c.ANONYMOUS_ACCESS ??= ["secrets", "files"];
  }
  exitOnConfigIssues([...secretsConfigIssues(c), ...identityConfigIssues(c)]);
  return c;
};

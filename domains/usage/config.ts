// Settings of the usage domain (zod shapes; lib/config.ts reads the environment): retention of
// the hits, how far ahead their partitions are made, registration, and the default rate limits of
// a usage client (each client may have its own, in usage_clients).
import { z } from "zod";
import type { ConfigOf } from "../../lib/config.js";

const perWindow = (fallback: number) => z.coerce.number().int().min(1).default(fallback);

export const usageConfig = {
  // Days of hits kept in api_hits: older days' partitions are dropped whole. The daily and hourly
  // rollups are kept.
  USAGE_RETENTION_DAYS: z.coerce.number().int().min(1).max(3_650).default(30),
  // Days of partitions made ahead of today, so no hit waits for one to be created.
  USAGE_PARTITIONS_AHEAD_DAYS: z.coerce.number().int().min(1).max(60).default(3),
  // Hits an API process holds while their enqueue to Redis is in flight; beyond, 503 at once.
  USAGE_MAX_QUEUED_HITS: z.coerce.number().int().min(1).default(50_000),
  // Hits committed to Postgres in one statement by a worker (group commit across jobs).
  USAGE_BATCH_MAX: z.coerce.number().int().min(1).max(20_000).default(5_000),
  // A read replica (postgres://…) for the usage reads (/api/usage/*); unset: DATABASE_URL. Writes
  // always go to DATABASE_URL.
  DATABASE_READ_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  // A directory where an API process keeps the hits it acknowledges while Redis cannot take them
  // (fsync'd before the 202), replayed into log-batching when Redis is back. Unset: such hits get
  // 503. Give each replica a persistent volume (or share one: files are claimed before replay).
  USAGE_SPOOL_DIR: z.string().min(1).optional(),
  // When set, POST /api/register needs `Authorization: Bearer <token>`; unset: open to anyone.
  REGISTRATION_TOKEN: z.string().min(16, "at least 16 characters").optional(),
  // Registrations per client address per hour: open registration cannot mint clients without end.
  USAGE_REGISTRATIONS_PER_ADDRESS_PER_HOUR: z.coerce.number().int().min(1).default(20),
  // Default limits of a client (per minute and per hour), on the read and token routes and, apart,
  // on logged hits (a batch counts its hits). A client's own limits in usage_clients win.
  USAGE_READS_PER_MINUTE: perWindow(100),
  USAGE_READS_PER_HOUR: perWindow(1_000),
  USAGE_HITS_PER_MINUTE: perWindow(60_000),
  USAGE_HITS_PER_HOUR: perWindow(1_000_000),
  // A client that has used this share of an hourly limit is told so (usage.quota_warning), once
  // per window. 100: never.
  USAGE_QUOTA_WARNING_PERCENT: z.coerce.number().int().min(1).max(100).default(80),
};

export type UsageConfig = ConfigOf<typeof usageConfig>;

// Settings of the alerts domain (zod shapes; lib/config.ts reads the environment).
import { z } from "zod";
import type { ConfigOf } from "../../lib/config.js";

export const alertsConfig = {
  // When set, POST /v1/alerts/events requires `Authorization: Bearer <token>`.
  ALERTS_INGEST_TOKEN: z.string().min(16, "at least 16 characters").optional(),
  // Events merged into Postgres in one statement by a worker (group commit).
  ALERTS_BATCH_MAX: z.coerce.number().int().min(1).max(5000).default(500),
  // Events an API process holds while its enqueues to Redis are in flight; beyond, 503 at once.
  ALERTS_MAX_QUEUED: z.coerce.number().int().min(1).default(10_000),
};

export type AlertsConfig = ConfigOf<typeof alertsConfig>;

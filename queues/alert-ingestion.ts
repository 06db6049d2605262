// Contract of the `alert-ingestion` queue: `alerts.ingest` carries one event the emitter sent,
// `alerts.ingestBatch` the events the API received at about the same moment.
import { z } from "zod";
import { pgInstant, pgText } from "../lib/postgres-values.js";
import { baseJobOptions, defineQueue } from "./contract.js";

const isoTimestamp = pgInstant();
export const alertEventSchema = z.object({
  type: z.enum(["ALERT_CREATED", "ALERT_CHANGED"]),
  alert: z.object({
    alertId: pgText().min(1).max(256),
    name: pgText().max(1024),
    status: z.enum(["TRIGGERED", "ACKNOWLEDGED", "RESOLVED"]),
    responder: z
      .object({ userId: pgText().max(256).optional(), name: pgText().max(512).optional() })
      .optional(),
    service: z
      .object({ serviceId: pgText().max(256).optional(), name: pgText().max(512).optional() })
      .optional(),
    triggeredOn: isoTimestamp,
    acknowledgedOn: isoTimestamp.optional(),
    resolvedOn: isoTimestamp.optional(),
  }),
});

export type AlertEvent = z.infer<typeof alertEventSchema>;

/** Events the API received at about the same moment, as one job (see domains/alerts/service.ts). */
export const ALERT_EVENTS_PER_JOB = 500;
export const alertEventBatchSchema = z.object({
  events: z.array(alertEventSchema).min(1).max(ALERT_EVENTS_PER_JOB),
});
/**
 * What a batch job holds once its events are merged: their count. A finished job is kept an hour,
 * and 5,000 of them with 500 events each would hold gigabytes of Redis.
 */
export const mergedBatchSchema = z.object({ merged: z.number().int().min(1) });
export type MergedBatch = z.infer<typeof mergedBatchSchema>;
const batchJobSchema = z.union([alertEventBatchSchema, mergedBatchSchema]);

export const alertIngestionQueue = defineQueue({
  name: "alert-ingestion",
  jobs: {
    "alerts.ingest": alertEventSchema,
    "alerts.ingestBatch": batchJobSchema,
    // The same job under its name before 0.2: such jobs may still be queued when a new worker starts.
    "alerts.ingest-batch": batchJobSchema,
  },
  defaultJobOptions: {
    ...baseJobOptions,
    // An unreachable Postgres does not spend attempts (workers/runtime.ts delays the job until it
    // is back); these are for other failures, about 2 h of them.
    attempts: 15,
    backoff: { type: "exponential", delay: 500, jitter: 0.5 },
    // High volume: keep fewer finished jobs; the alert itself lives in Postgres.
    removeOnComplete: { age: 3600, count: 5_000 },
  },
});

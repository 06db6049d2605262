// Contract of the `alert-ingestion` queue: one `alerts.ingest` job per event the emitter sent.
import { z } from "zod";
import { baseJobOptions, defineQueue } from "./contract.js";

const isoTimestamp = z.iso.datetime({ offset: true, message: "must be an ISO-8601 timestamp" });
export const alertEventSchema = z.object({
  type: z.enum(["ALERT_CREATED", "ALERT_CHANGED"]),
  alert: z.object({
    alertId: z.string().min(1).max(256),
    name: z.string().max(1024),
    status: z.enum(["TRIGGERED", "ACKNOWLEDGED", "RESOLVED"]),
    responder: z
      .object({ userId: z.string().max(256).optional(), name: z.string().max(512).optional() })
      .optional(),
    service: z
      .object({ serviceId: z.string().max(256).optional(), name: z.string().max(512).optional() })
      .optional(),
    triggeredOn: isoTimestamp,
    acknowledgedOn: isoTimestamp.optional(),
    resolvedOn: isoTimestamp.optional(),
  }),
});

export type AlertEvent = z.infer<typeof alertEventSchema>;

/** Events the API received at about the same moment, as one job (see api/routes/alerts.ts). */
export const ALERT_EVENTS_PER_JOB = 500;
export const alertEventBatchSchema = z.object({
  events: z.array(alertEventSchema).min(1).max(ALERT_EVENTS_PER_JOB),
});

export const alertIngestionQueue = defineQueue({
  name: "alert-ingestion",
  jobs: { "alerts.ingest": alertEventSchema, "alerts.ingest-batch": alertEventBatchSchema },
  defaultJobOptions: {
    ...baseJobOptions,
    // ~4.5 h of retries: an acknowledged event survives a long Postgres outage.
    attempts: 15,
    backoff: { type: "exponential", delay: 500, jitter: 0.5 },
    // High volume: keep fewer finished jobs; the alert itself lives in Postgres.
    removeOnComplete: { age: 3600, count: 5_000 },
  },
});

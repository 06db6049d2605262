// The alerts domain: events in (the API's group commit into `alert-ingestion` jobs, the worker's
// group commit into Postgres) and alerts out (queries with filters, MTTA/MTTR statistics).
import type { Db } from "../../db/client.js";
import { createBatcher } from "../../lib/batcher.js";
import { AppError, isInvalidData, PermanentError, RETRY_AFTER_SECONDS } from "../../lib/errors.js";
import { ALERT_EVENTS_PER_JOB, type AlertEvent, alertIngestionQueue } from "../../queues/alert-ingestion.js";
import { enqueue } from "../../queues/contract.js";
import type { Connections } from "../connections.js";
import type { NotificationsService } from "../notifications/service.js";
import type { AlertsConfig } from "./config.js";
import {
  type AlertCursor,
  type AlertFilters,
  type AlertGroupBy,
  alertStats,
  getAlert,
  listAlerts,
  mergeAlertEvents,
} from "./queries.js";

/** An event on its way into a merge; `rejected` is set when Postgres refused that event alone. */
interface PendingMerge {
  event: AlertEvent;
  rejected?: unknown;
}

const ALERT_NOTIFICATION = {
  TRIGGERED: "alert.triggered",
  ACKNOWLEDGED: "alert.acknowledged",
  RESOLVED: "alert.resolved",
} as const;

/** Postgres refused some events of a job for good (the rest landed). */
export class RejectedEventsError extends PermanentError {
  override readonly name = "RejectedEventsError";
}

export type AlertsService = ReturnType<typeof createAlertsService>;

export function createAlertsService(
  config: Pick<AlertsConfig, "ALERTS_BATCH_MAX" | "ALERTS_MAX_QUEUED">,
  { database, queues }: Pick<Connections, "database" | "queues">,
  { notifications }: { notifications?: NotificationsService } = {},
) {
  /**
   * Events posted at about the same moment go to Redis as one `alerts.ingestBatch` job (group
   * commit, as the worker does into Postgres): each caller resolves once the job holding its
   * event is in Redis, with that job's id. Under load a job carries tens of events, which divides
   * BullMQ's per-job cost (Redis scripts, the worker's fetch and completion) among them; when idle
   * a job carries one event and adds no latency. While Redis is slow to answer, at most
   * ALERTS_MAX_QUEUED events wait here; later ones get 503 at once, so memory stays bounded.
   */
  type PendingEnqueue = { event: AlertEvent; tenant: string; jobId: string };
  const enqueuer = createBatcher<PendingEnqueue>({
    maxBatch: ALERT_EVENTS_PER_JOB,
    maxInFlight: 4,
    maxQueued: {
      items: config.ALERTS_MAX_QUEUED,
      error: () =>
        new AppError(
          "SERVICE_UNAVAILABLE",
          "too many alert events are waiting for Redis; retry later",
          undefined,
          RETRY_AFTER_SECONDS,
        ),
    },
    flush: async (items) => {
      const job = await enqueue(
        queues.get(alertIngestionQueue.name),
        alertIngestionQueue,
        "alerts.ingestBatch",
        { events: items.map((i) => i.event) },
        {},
        // Every caller whose event rides in the job may read its status.
        [...new Set(items.map((i) => i.tenant))],
      );
      for (const item of items) item.jobId = job.id ?? "";
    },
  });

  /**
   * Merges events and, in the same transaction, announces every alert they moved (new,
   * acknowledged, resolved) to the ops and admins who subscribe (alert.* notifications).
   */
  const merge = (items: PendingMerge[]) =>
    database.sql.begin(async (tx) => {
      const moved = await mergeAlertEvents(
        tx,
        items.map((i) => i.event),
      );
      if (notifications && moved.length > 0)
        await notifications.notifyAudience(
          tx,
          moved.map(({ at, ...alert }) => ({
            type: ALERT_NOTIFICATION[alert.status],
            data: { ...alert, at: at.toISOString() },
          })),
        );
    });
  const merger = createBatcher<PendingMerge>({
    maxBatch: config.ALERTS_BATCH_MAX,
    async flush(items) {
      try {
        await merge(items);
      } catch (err) {
        if (!isInvalidData(err)) throw err;
        // One event Postgres refuses must not sink the others sharing its statement: write them
        // one at a time and fail only the jobs of the refused ones.
        for (const item of items) {
          try {
            await merge([item]);
          } catch (itemErr) {
            if (!isInvalidData(itemErr)) throw itemErr;
            item.rejected = itemErr;
          }
        }
      }
    },
  });

  const db = (): Db => database.db;

  return {
    /** Enqueues `tenant`'s event in a shared `alerts.ingestBatch` job; resolves to that job's id. */
    async submit(event: AlertEvent, tenant: string): Promise<string> {
      const pending = { event, tenant, jobId: "" };
      await enqueuer.add(pending);
      return pending.jobId;
    },

    /**
     * Merges events into Postgres with those of concurrent jobs; throws RejectedEventsError naming
     * the events Postgres refused (the rest land).
     */
    async ingest(events: AlertEvent[]): Promise<void> {
      const pending = events.map((event): PendingMerge => ({ event }));
      await Promise.all(pending.map((p) => merger.add(p)));
      const rejected = pending.filter((p) => p.rejected !== undefined);
      if (rejected.length > 0) {
        const reasons = rejected.map((p) => `${p.event.alert.alertId}: ${(p.rejected as Error).message}`);
        throw new RejectedEventsError(
          `${rejected.length} of ${events.length} event(s) refused by Postgres: ${reasons.join("; ")}`,
        );
      }
    },

    get: (alertId: string) => getAlert(db(), alertId),
    list: (filters: AlertFilters, page: { limit: number; cursor?: AlertCursor | undefined }) =>
      listAlerts(db(), filters, page),
    stats: (filters: AlertFilters, groupBy?: AlertGroupBy) => alertStats(db(), filters, groupBy),

    async close(): Promise<void> {
      await Promise.allSettled([enqueuer.drain(), merger.drain()]);
    },
  };
}

// `alert-ingestion`: a job carries one event (`alerts.ingest`) or the events the API received
// together (`alerts.ingest-batch`); the events of concurrent jobs are merged into Postgres in
// batches (group commit), which is what lets one worker keep up with thousands of events/s.
import type { Job } from "bullmq";
import { mergeAlertEvents } from "../db/queries/alerts.js";
import { createBatcher } from "../lib/batcher.js";
import { isInvalidData } from "../lib/errors.js";
import { type AlertEvent, alertIngestionQueue } from "../queues/alert-ingestion.js";
import { jobPayload, type ProcessorFactory, unrecoverable } from "./runtime.js";

/** An event on its way into a batch; `rejected` is set when Postgres refused that event alone. */
interface PendingEvent {
  event: AlertEvent;
  rejected?: unknown;
}

export const alertIngestionProcessor: ProcessorFactory = ({ config, database }) => {
  const merge = (items: PendingEvent[]) =>
    mergeAlertEvents(
      database.sql,
      items.map((i) => i.event),
    );
  const batcher = createBatcher<PendingEvent>({
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

  /** Merges the events; throws UnrecoverableError naming those Postgres refused (the rest land). */
  async function ingest(events: AlertEvent[]): Promise<void> {
    const pending = events.map((event): PendingEvent => ({ event }));
    await Promise.all(pending.map((p) => batcher.add(p)));
    const rejected = pending.filter((p) => p.rejected !== undefined);
    if (rejected.length > 0) {
      const reasons = rejected.map((p) => `${p.event.alert.alertId}: ${(p.rejected as Error).message}`);
      unrecoverable(
        new Error(
          `${rejected.length} of ${events.length} event(s) refused by Postgres: ${reasons.join("; ")}`,
        ),
      );
    }
  }

  return {
    async handle(job: Job) {
      if (job.name === "alerts.ingest-batch") {
        const { events } = jobPayload(alertIngestionQueue, "alerts.ingest-batch", job);
        await ingest(events);
        return { events: events.length };
      }
      const event = jobPayload(alertIngestionQueue, "alerts.ingest", job);
      await ingest([event]);
      return { alertId: event.alert.alertId };
    },
    close: () => batcher.drain(),
  };
};

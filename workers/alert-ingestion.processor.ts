// `alert-ingestion`: each job is one event; concurrent jobs are merged into Postgres in
// batches (group commit), which is what lets one worker keep up with thousands of events/s.
import type { Job } from "bullmq";
import { mergeAlertEvents } from "../db/queries/alerts.js";
import { createBatcher } from "../lib/batcher.js";
import { type AlertEvent, alertIngestionQueue } from "../queues/alert-ingestion.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

export const alertIngestionProcessor: ProcessorFactory = ({ config, database }) => {
  const batcher = createBatcher<AlertEvent>({
    maxBatch: config.ALERTS_BATCH_MAX,
    flush: (events) => mergeAlertEvents(database.sql, events),
  });
  return {
    async handle(job: Job) {
      if (job.name === "alerts.ingest-batch") {
        const { events } = jobPayload(alertIngestionQueue, "alerts.ingest-batch", job);
        await Promise.all(events.map((e) => batcher.add(e)));
        return { events: events.length };
      }
      const event = jobPayload(alertIngestionQueue, "alerts.ingest", job);
      await batcher.add(event);
      return { alertId: event.alert.alertId };
    },
    close: () => batcher.drain(),
  };
};

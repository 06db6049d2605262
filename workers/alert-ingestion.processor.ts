// `alert-ingestion`: a job carries one event (`alerts.ingest`) or the events the API received
// together (`alerts.ingestBatch`); the alerts service merges them into Postgres with those of
// concurrent jobs (group commit). A merged batch keeps only its count ({ merged }), not its events.
import type { Job } from "bullmq";
import { alertIngestionQueue, type MergedBatch } from "../queues/alert-ingestion.js";
import { replaceJobData } from "../queues/contract.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

export const alertIngestionProcessor: ProcessorFactory = ({ services: { alerts } }) => ({
  async handle(job: Job) {
    if (job.name === "alerts.ingestBatch" || job.name === "alerts.ingest-batch") {
      const batch = jobPayload(alertIngestionQueue, job.name, job);
      // Merged before, then delivered again (its worker died before completing it): nothing to do.
      if ("merged" in batch) return { events: batch.merged };
      await alerts.ingest(batch.events);
      await replaceJobData(job, { merged: batch.events.length } satisfies MergedBatch);
      return { events: batch.events.length };
    }
    const event = jobPayload(alertIngestionQueue, "alerts.ingest", job);
    await alerts.ingest([event]);
    return { alertId: event.alert.alertId };
  },
});

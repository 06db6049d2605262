// `alert-ingestion`: a job carries one event (`alerts.ingest`) or the events the API received
// together (`alerts.ingestBatch`); the alerts service merges them into Postgres with those of
// concurrent jobs (group commit).
import type { Job } from "bullmq";
import { alertIngestionQueue } from "../queues/alert-ingestion.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

export const alertIngestionProcessor: ProcessorFactory = ({ services: { alerts } }) => ({
  async handle(job: Job) {
    if (job.name === "alerts.ingestBatch" || job.name === "alerts.ingest-batch") {
      const { events } = jobPayload(alertIngestionQueue, job.name, job);
      await alerts.ingest(events);
      return { events: events.length };
    }
    const event = jobPayload(alertIngestionQueue, "alerts.ingest", job);
    await alerts.ingest([event]);
    return { alertId: event.alert.alertId };
  },
});

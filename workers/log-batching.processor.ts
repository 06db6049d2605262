// `log-batching`: a `usage.logHits` job carries the hits clients logged at about the same moment;
// the usage service commits them with those of concurrent jobs and their rollups in one
// statement. A committed job keeps only its count. `usage.maintainPartitions`, scheduled, keeps
// the day partitions of api_hits and the live counters in order.
import type { Job } from "bullmq";
import { replaceJobData } from "../queues/contract.js";
import { type CommittedBatch, logBatchingQueue } from "../queues/log-batching.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

const HOUR_MS = 3_600_000;

export const logBatchingProcessor: ProcessorFactory = ({ services: { usage } }) => {
  // The hot answer ready before the first read after a start, as after every commit.
  usage.warmSoon();
  return {
    schedules: [{ jobName: "usage.maintainPartitions", everyMs: HOUR_MS }],
    async handle(job: Job, log) {
      if (job.name === "usage.maintainPartitions") return usage.maintain(log);
      const batch = jobPayload(logBatchingQueue, "usage.logHits", job);
      // Committed before, then delivered again (its worker died before completing it): nothing to do.
      if (!("hits" in batch)) return { logged: batch.logged };
      await usage.record(batch.hits);
      await replaceJobData(job, { logged: batch.hits.length } satisfies CommittedBatch);
      return { logged: batch.hits.length };
    },
  };
};

// `chunk-hashing`: `files.verify` reads every chunk of one version of a file back from the file
// store and checks it (the files service marks the file verified or corrupted).
import type { Job } from "bullmq";
import { ANONYMOUS_TENANT } from "../domains/identity/caller.js";
import { chunkHashingQueue } from "../queues/chunk-hashing.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

export const chunkHashingProcessor: ProcessorFactory = ({ services: { files } }) => ({
  async handle(job: Job, log) {
    const { tenant, name, version } = jobPayload(chunkHashingQueue, "files.verify", job);
    const result = await files.verify(tenant ?? ANONYMOUS_TENANT, name, version, {
      log,
      progress: (p) => job.updateProgress(p),
    });
    if (result.outcome === "verified") log.info(result, "file verified");
    return result;
  },
});

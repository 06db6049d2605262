// Contract of the `chunk-hashing` queue: `files.verify` reads every stored chunk of one version
// of a file back from the file store and checks it against the manifest's SHA-1s.
import { z } from "zod";
import { baseJobOptions, defineQueue } from "./contract.js";

// Ids only: file bytes never go into a job payload (payloads are plain text in Redis and Bull Board).
export const fileVerifySchema = z.object({
  /** Whose file: names are per tenant. Absent in jobs enqueued before files had tenants. */
  tenant: z.string().min(1).optional(),
  name: z.string().min(1).max(255),
  version: z.string().min(1).max(64),
});

export type FileVerify = z.infer<typeof fileVerifySchema>;

export const chunkHashingQueue = defineQueue({
  name: "chunk-hashing",
  jobs: { "files.verify": fileVerifySchema },
  defaultJobOptions: {
    ...baseJobOptions,
    // Retries are for a store that was briefly unreachable; a mismatch is unrecoverable.
    attempts: 5,
  },
});

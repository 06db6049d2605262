// Contract of the `encryption` queue: one `secrets.store` job per accepted store. The client's
// key and value travel sealed (lib/sealing.ts seal, under JOB_SEAL_KEY); only the record id,
// which is a lookup key and no secret, is in clear.
import { z } from "zod";
import { baseJobOptions, defineQueue } from "./contract.js";

export const SECRET_ID_MAX = 256;

/** What the API seals for the worker. `value` is the JSON text of the client's value. */
export const sealedStoreSchema = z.object({
  /** The account whose secret it is (sealed, so a job cannot be replayed as another's store). */
  tenant: z.string().min(1).optional(),
  id: z.string().min(1).max(SECRET_ID_MAX),
  key: z.string().min(1),
  value: z.string(),
  /** Write order (domains/secrets/write-order.ts): the highest seq for an id wins, whatever order jobs run in. */
  seq: z.number().int().positive(),
});
export type SealedStore = z.infer<typeof sealedStoreSchema>;

/** Additional data bound to the sealed blob, so it only opens as the store of this id. */
export const storeSealContext = (id: string) => `conveyor/jobs/secrets.store/${id}`;

export const secretStorePayloadSchema = z.object({
  id: z.string().min(1).max(SECRET_ID_MAX),
  // Absent once the job has finished: the worker replaces the data with { id, redacted } so no
  // sealed secret lingers in Redis or Bull Board for as long as finished jobs are kept.
  sealed: z.string().min(1).optional(),
  redacted: z.enum(["stored", "failed"]).optional(),
});
export type SecretStorePayload = z.infer<typeof secretStorePayloadSchema>;

export const encryptionQueue = defineQueue({
  name: "encryption",
  jobs: { "secrets.store": secretStorePayloadSchema },
  defaultJobOptions: {
    ...baseJobOptions,
    // Postgres being unreachable does not spend attempts (the worker runtime delays the job
    // instead, see workers/runtime.ts); these are for everything else. A job keeps its sealed
    // payload while it retries, so the schedule stays short: at most 17 minutes of backoff in all
    // (20 attempts would be 73 hours).
    attempts: 12,
    backoff: { type: "exponential", delay: 500, jitter: 0.5 },
  },
});

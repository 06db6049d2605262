// `encryption`: each `secrets.store` job hands its sealed payload to the secrets service, which
// opens it, encrypts the value under the client's key and writes it (last write wins by seq).
// A finished job keeps no secret: its data is replaced by { id, redacted }, whether it completed
// or failed for good.
import { type Job, UnrecoverableError } from "bullmq";
import { isDependencyDown, PermanentError } from "../lib/errors.js";
import { replaceJobData } from "../queues/contract.js";
import { encryptionQueue, type SecretStorePayload } from "../queues/encryption.js";
import { jobPayload, type ProcessorFactory, unrecoverable } from "./runtime.js";

/** A failed job is kept for days: it keeps the id, not the sealed key and value. */
function redactFailed(job: Job): Promise<void> {
  const id = typeof job.data?.id === "string" ? job.data.id : "";
  return replaceJobData(job, { id, redacted: "failed" } satisfies SecretStorePayload);
}

const isFinalFailure = (err: unknown, job: Job) =>
  err instanceof PermanentError ||
  err instanceof UnrecoverableError ||
  job.attemptsMade + 1 >= (job.opts.attempts ?? 1);

export const encryptionProcessor: ProcessorFactory = ({ services: { secrets } }) => ({
  async handle(job: Job) {
    const { id, sealed, redacted } = jobPayload(encryptionQueue, "secrets.store", job);
    if (sealed === undefined) {
      // Redacted: it completed before (and was delivered again), or it failed for good.
      if (redacted === "stored") return { id, stored: true };
      unrecoverable(new Error("the sealed payload was discarded when the job failed"));
    }
    try {
      await secrets.writeSealed(id, sealed);
    } catch (err) {
      // An outage is no failure: the runtime delays the job, which must keep its sealed payload.
      if (isDependencyDown(err)) throw err;
      // Redacted before the job is failed, so a crash in between cannot leave a failed job that
      // still holds the sealed payload; failed() below catches the paths that never get here.
      if (isFinalFailure(err, job)) await redactFailed(job).catch(() => {});
      throw err;
    }
    await replaceJobData(job, { id, redacted: "stored" } satisfies SecretStorePayload);
    return { id, stored: true };
  },
  // A payload that does not parse, or one that stalled too often, fails without reaching the
  // catch above.
  failed: redactFailed,
});

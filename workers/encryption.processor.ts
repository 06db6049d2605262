// `encryption`: each `secrets.store` job opens its sealed payload, encrypts the value under the
// client's key (lib/crypto.ts record format) and upserts it, last write wins by seq. Concurrent
// jobs are written to Postgres together (group commit), and a finished job keeps no secret.
import { type Job, UnrecoverableError } from "bullmq";
import { type SecretWrite, upsertSecrets } from "../db/queries/secrets.js";
import { createBatcher } from "../lib/batcher.js";
import { CryptoError, encryptRecord, open } from "../lib/crypto.js";
import { isDependencyDown } from "../lib/errors.js";
import { createSecretsKeys, type SecretsKeys } from "../lib/secrets-keys.js";
import {
  encryptionQueue,
  type SealedStore,
  type SecretStorePayload,
  sealedStoreSchema,
  storeSealContext,
} from "../queues/encryption.js";
import { jobPayload, type ProcessorFactory, unrecoverable } from "./runtime.js";

const MAX_BATCH = 256;
export const encryptionProcessor: ProcessorFactory = ({ config, database }) => {
  const batcher = createBatcher<SecretWrite>({
    maxBatch: MAX_BATCH,
    flush: (writes) => upsertSecrets(database.sql, writes),
  });
  // Built on first use: a worker without JOB_SEAL_KEY (only possible with a hand-built config;
  // lib/config.ts requires it of a process serving this queue) fails jobs retryably, so another
  // replica can still store them, rather than failing at construction.
  let keys: SecretsKeys | undefined;

  /** Opens the sealed payload. Error messages never quote what was inside. */
  function openStore(payload: SecretStorePayload & { sealed: string }): SealedStore {
    keys ??= createSecretsKeys(config);
    let plaintext: Buffer;
    try {
      plaintext = open(keys.sealKey, payload.sealed, storeSealContext(payload.id));
    } catch (err) {
      // Retryable: during a JOB_SEAL_KEY rollout another replica may hold the key it was sealed with.
      if (err instanceof CryptoError)
        throw new Error(`sealed payload does not open with this worker's JOB_SEAL_KEY (${err.message})`);
      throw err;
    }
    const parsed = sealedStoreSchema.safeParse(safeJson(plaintext));
    if (!parsed.success || parsed.data.id !== payload.id)
      unrecoverable(new Error("sealed payload is malformed"));
    return parsed.data;
  }

  async function store(job: Job, payload: SecretStorePayload & { sealed: string }) {
    const sealed = openStore(payload);
    const master = await (keys as SecretsKeys).masterKey(sealed.key);
    const ciphertext = encryptRecord(master, sealed.id, Buffer.from(sealed.value, "utf8"));
    // Postgres unreachable: the runtime delays the job without spending an attempt.
    await batcher.add({ id: sealed.id, ciphertext, seq: sealed.seq });
    await job.updateData({ id: sealed.id, redacted: "stored" } satisfies SecretStorePayload);
    return { id: sealed.id, stored: true };
  }

  return {
    async handle(job: Job) {
      const payload = jobPayload(encryptionQueue, "secrets.store", job);
      const { sealed } = payload;
      if (sealed === undefined) {
        // Redacted: it completed before (and was delivered again), or it failed for good.
        if (payload.redacted === "stored") return { id: payload.id, stored: true };
        unrecoverable(new Error("the sealed payload was discarded when the job failed"));
      }
      try {
        return await store(job, { ...payload, sealed });
      } catch (err) {
        // An outage is no failure: the runtime delays the job, which must keep its sealed payload.
        if (isDependencyDown(err)) throw err;
        const final = err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        // A failed job is kept for days: it keeps the id, not the sealed key and value.
        if (final)
          await job
            .updateData({ id: payload.id, redacted: "failed" } satisfies SecretStorePayload)
            .catch(() => {});
        throw err;
      }
    },
    async close() {
      await batcher.drain();
      keys?.clear();
    },
  };
};

function safeJson(buffer: Buffer): unknown {
  try {
    return JSON.parse(buffer.toString("utf8"));
  } catch {
    // JSON.parse's message quotes the input, which is secret here.
    return undefined;
  }
}

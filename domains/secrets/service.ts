// The secrets domain: an encrypted key-value store. A store is sealed by the API (the client's
// key and value never rest in clear in Redis) and written by the `encryption` worker, last write
// wins; a retrieval reads and decrypts in the API, one slow key derivation per request at most,
// under a failed-decryption limit.
import { createBatcher } from "../../lib/batcher.js";
import { AppError, PermanentError, serviceUnavailable } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { CryptoError, open, seal } from "../../lib/sealing.js";
import { type SealedStore, sealedStoreSchema, storeSealContext } from "../../queues/encryption.js";
import type { Connections } from "../connections.js";
import type { SecretsConfig } from "./config.js";
import { createDecryptLimit } from "./decrypt-limit.js";
import { createSecretsKeys, type SecretsKeys } from "./keys.js";
import { findSecrets, type SecretWrite, upsertSecrets } from "./queries.js";
import { decryptRecord, encryptRecord } from "./record.js";
import { nextSecretSeq } from "./write-order.js";

// Stores written to Postgres in one statement by a worker (group commit).
const MAX_BATCH = 256;

export interface Retrieval {
  /** The JSON array of {id, value} the key opens, in id order. */
  json: string;
  /** The last id examined, when more matches exist after it. */
  nextAfter?: string;
}

export type SecretsService = ReturnType<typeof createSecretsService>;

export function createSecretsService(
  config: SecretsConfig & { QUEUE_PREFIX: string },
  { database, redis }: Pick<Connections, "database" | "redis">,
) {
  // Built on first use: a process without JOB_SEAL_KEY (only possible with a hand-built config;
  // every process that serves secrets must set it) fails secrets requests and jobs, retryably,
  // rather than failing at start.
  let keys: SecretsKeys | undefined;
  const secretsKeys = (): SecretsKeys => {
    if (config.JOB_SEAL_KEY === undefined)
      throw new AppError("INTERNAL", "secrets are not configured on this server (JOB_SEAL_KEY)");
    keys ??= createSecretsKeys(config);
    return keys;
  };
  const writer = createBatcher<SecretWrite>({
    maxBatch: MAX_BATCH,
    flush: (writes) => upsertSecrets(database.sql, writes),
  });
  const decryptLimit = createDecryptLimit(redis, config.QUEUE_PREFIX, {
    limit: config.SECRETS_FAILED_DECRYPT_LIMIT,
    windowSeconds: config.SECRETS_FAILED_DECRYPT_WINDOW_SECONDS,
  });

  /** Opens a sealed store. Error messages never quote what was inside. */
  function openStore(id: string, sealed: string): SealedStore {
    let plaintext: Buffer;
    try {
      plaintext = open(secretsKeys().sealKeys, sealed, storeSealContext(id));
    } catch (err) {
      // Retryable: during a seal-key rollout another replica may hold the key it was sealed with.
      if (err instanceof CryptoError)
        throw new Error(
          `sealed payload does not open with this worker's seal keys (JOB_SEAL_KEY, JOB_SEAL_KEYS_ACCEPTED): ${err.message}`,
        );
      throw err;
    }
    const parsed = sealedStoreSchema.safeParse(safeJson(plaintext));
    if (!parsed.success || parsed.data.id !== id) throw new PermanentError("sealed payload is malformed");
    return parsed.data;
  }

  return {
    /**
     * The payload of a `secrets.store` job: the id in clear, the key and the value sealed with the
     * write's sequence number. `value` is any JSON value.
     */
    async sealStore(store: {
      id: string;
      key: string;
      value: unknown;
    }): Promise<{ id: string; sealed: string }> {
      const { id, key, value } = store;
      const text = JSON.stringify(value);
      const bytes = Buffer.byteLength(text, "utf8");
      if (bytes > config.SECRETS_MAX_VALUE_BYTES)
        throw new AppError(
          "PAYLOAD_TOO_LARGE",
          `value is ${bytes} bytes as JSON; the limit is ${config.SECRETS_MAX_VALUE_BYTES}`,
        );
      const { sealKeys } = secretsKeys();
      if (redis.status !== "ready") throw serviceUnavailable("Redis");
      const seq = await nextSecretSeq(redis, config.QUEUE_PREFIX);
      const sealed = seal(
        sealKeys,
        JSON.stringify({ id, key, value: text, seq } satisfies SealedStore),
        storeSealContext(id),
      );
      return { id, sealed };
    },

    /** Opens a sealed store, encrypts the value under the client's key and writes it (last write wins). */
    async writeSealed(id: string, sealed: string): Promise<void> {
      const store = openStore(id, sealed);
      const master = await secretsKeys().masterKey(store.key);
      const ciphertext = encryptRecord(master, store.id, Buffer.from(store.value, "utf8"));
      // Postgres unreachable: the worker runtime delays the job without spending an attempt.
      await writer.add({ id: store.id, ciphertext, seq: store.seq });
    },

    /**
     * Records matching an exact id or a `*` pattern that `key` opens, in id order; at most `limit`
     * matches examined, from after `after`. Records the key does not open are left out (and logged).
     * A caller address with too many failed retrievals of one pattern gets RATE_LIMITED.
     */
    async retrieve(query: {
      pattern: string;
      key: string;
      after?: string | undefined;
      limit: number;
      address: string;
      log: Logger;
    }): Promise<Retrieval> {
      const { pattern, key, limit, address, log } = query;
      const { masterKey } = secretsKeys();
      // The limit is a security control: without Redis it cannot be checked, so nothing is served.
      if (redis.status !== "ready") throw serviceUnavailable("Redis");
      const reserved = await decryptLimit.reserve(address, pattern);
      if (!reserved.allowed) {
        log.warn(
          { address, pattern, failures: reserved.failures, retryAfter: reserved.retryAfter },
          "secrets retrieval refused: too many failed decryptions",
        );
        throw new AppError(
          "RATE_LIMITED",
          "too many failed decryptions for this id pattern from this address; retry later",
          undefined,
          reserved.retryAfter,
        );
      }

      // One failure per request, however many records it missed: a key that opens some records of
      // a mixed family is not a guess, and must not be locked out after one request. A retrieval in
      // which nothing failed to open (an error included) gives its reservation back.
      let failed = 0;
      try {
        const rows = await findSecrets(database.sql, { pattern, after: query.after, limit: limit + 1 });
        const page = rows.slice(0, limit);
        const last = page.at(-1);
        const nextAfter = rows.length > limit && last ? last.id : undefined;
        if (page.length === 0) return { json: "[]", nextAfter };

        const master = await masterKey(key);
        const items: string[] = [];
        for (const row of page) {
          try {
            const text = decryptRecord(master, row.id, row.ciphertext).toString("utf8");
            // The plaintext is the JSON text the API serialised at store time (authenticated by
            // AES-GCM), so it is spliced in as is rather than parsed and serialised again.
            items.push(`{"id":${JSON.stringify(row.id)},"value":${text}}`);
          } catch (err) {
            if (!(err instanceof CryptoError)) throw err;
            failed++;
            log.warn({ secretId: row.id, reason: err.message }, "secret left out: the key does not open it");
          }
        }
        return { json: `[${items.join(",")}]`, nextAfter };
      } finally {
        if (failed === 0)
          await decryptLimit
            .release(address, pattern)
            .catch((err: Error) =>
              log.warn({ err: { message: err.message } }, "secrets: could not give an attempt back"),
            );
      }
    },

    async close(): Promise<void> {
      await writer.drain();
      keys?.clear();
    },
  };
}

function safeJson(buffer: Buffer): unknown {
  try {
    return JSON.parse(buffer.toString("utf8"));
  } catch {
    // JSON.parse's message quotes the input, which is secret here.
    return undefined;
  }
}

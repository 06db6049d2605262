// The limits of secrets retrieval: failed decryptions and new key derivations per caller address
// (in Redis, shared by every API replica), and key derivations at once in this process.
import type { Redis } from "ioredis";
import { createConcurrencyGate } from "../../lib/concurrency-gate.js";
import { createRateLimit } from "../../lib/rate-limit.js";
import type { SecretsConfig } from "./config.js";

export function createRetrievalLimits(redis: Redis, config: SecretsConfig & { QUEUE_PREFIX: string }) {
  const prefix = `${config.QUEUE_PREFIX}:secrets`;
  return {
    /** Retrievals that opened nothing, or missed a record, per address whatever the pattern. */
    failedDecryptions: createRateLimit(redis, {
      keyPrefix: `${prefix}:failed-decrypt`,
      points: config.SECRETS_FAILED_DECRYPT_LIMIT,
      windowSeconds: config.SECRETS_FAILED_DECRYPT_WINDOW_SECONDS,
      message: "too many failed decryptions from this address; retry later",
      // The limit is a security control: without Redis it cannot be checked, so nothing is served.
      whenRedisIsDown: "refuse",
    }),
    /** scrypt runs (keys not in the cache) per address per minute. */
    derivations: createRateLimit(redis, {
      keyPrefix: `${prefix}:kdf`,
      points: config.SECRETS_KDF_PER_ADDRESS_PER_MINUTE,
      windowSeconds: 60,
      message: "too many key derivations (new decryption keys) from this address; retry later",
      whenRedisIsDown: "refuse",
    }),
    /** scrypt runs at once in this process, so callers together cannot hold every libuv thread. */
    derivationGate: createConcurrencyGate({
      max: config.SECRETS_KDF_CONCURRENCY,
      queueMax: config.SECRETS_KDF_QUEUE_MAX,
      what: "key derivations",
      retryAfterSeconds: 1,
    }),
  };
}

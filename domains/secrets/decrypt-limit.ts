// The failed-decryption limit of secrets retrieval: at most SECRETS_FAILED_DECRYPT_LIMIT
// retrievals with a record the key did not open, per caller address and id pattern, per window.
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

// Each retrieval reserves one attempt before it reads or derives anything, so concurrent guesses
// cannot all pass one check made before any of them has failed. The count is failures plus
// retrievals in flight; the window starts with the first reservation of a slot that has none.
// Answers {count, remaining ms}.
const RESERVE_ATTEMPT_SCRIPT = `
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return {n, redis.call('PTTL', KEYS[1])}`;

// Gives a reservation back (a retrieval in which nothing failed to open, or one refused). Never
// below zero, never on a slot that has expired meanwhile (DECR would recreate it without expiry),
// and a slot back at zero is deleted: the next failure starts a window of its own.
const RELEASE_ATTEMPT_SCRIPT = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])`;

export interface DecryptLimit {
  /** Reserves an attempt: `allowed` false (with the seconds until the window ends) past the limit. */
  reserve(
    address: string,
    pattern: string,
  ): Promise<{ allowed: boolean; failures: number; retryAfter: number }>;
  /** Gives a reservation back: the retrieval failed to open nothing. */
  release(address: string, pattern: string): Promise<unknown>;
}

export function createDecryptLimit(
  redis: Redis,
  prefix: string,
  opts: { limit: number; windowSeconds: number },
): DecryptLimit {
  const slot = (address: string, pattern: string) =>
    `${prefix}:secrets:failed-decrypt:${createHash("sha256").update(`${address}\n${pattern}`).digest("base64url")}`;
  const release = (address: string, pattern: string) =>
    redis.eval(RELEASE_ATTEMPT_SCRIPT, 1, slot(address, pattern));
  return {
    async reserve(address, pattern) {
      const [count, ttlMs] = (await redis.eval(
        RESERVE_ATTEMPT_SCRIPT,
        1,
        slot(address, pattern),
        opts.windowSeconds,
      )) as [number, number];
      const allowed = Number(count) <= opts.limit;
      // A refused attempt is no attempt: it gives its reservation back.
      if (!allowed) await release(address, pattern).catch(() => {});
      return {
        allowed,
        // Those counted before this retrieval (some may still be in flight).
        failures: Number(count) - 1,
        retryAfter: Math.max(1, Math.ceil(Number(ttlMs) / 1000)),
      };
    },
    release,
  };
}

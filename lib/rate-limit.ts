// Rate limits shared by every replica: a fixed window of `points` per key in Redis
// (rate-limiter-flexible's RateLimiterRedis), refusing with the platform's RATE_LIMITED and Retry-After.
import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { AppError, isDependencyDown, serviceUnavailable } from "./errors.js";

/** Where a key stands in its window after a consume: what the RateLimit headers report. */
export interface RateLimitState {
  limit: number;
  remaining: number;
  /** Seconds until the window resets. */
  resetSeconds: number;
}

export interface RateLimit {
  readonly points: number;
  readonly windowSeconds: number;
  /**
   * Takes `points` from `key`'s window. Past the limit: AppError RATE_LIMITED with the seconds
   * left in the window as Retry-After. Concurrent callers cannot all pass one check: the count is
   * taken in one atomic step, before the caller does what is limited.
   */
  consume(key: string, points?: number): Promise<RateLimitState>;
  /** Gives points back: what was reserved turned out not to count (a success, an error of ours). */
  reward(key: string, points?: number): Promise<void>;
}

export interface RateLimitOptions {
  /** Redis key prefix of the windows, e.g. `${QUEUE_PREFIX}:secrets:failed-decrypt`. */
  keyPrefix: string;
  points: number;
  windowSeconds: number;
  /** The message of the 429 (never quote the key: it may be an address or worse). */
  message: string;
  /**
   * While Redis is down: `refuse` answers 503 (the limit guards something that must not go
   * unguarded); `memory` keeps counting in this process alone, so the limit still holds per replica.
   */
  whenRedisIsDown: "refuse" | "memory";
}

export function createRateLimit(redis: Redis, opts: RateLimitOptions): RateLimit {
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: opts.keyPrefix,
    points: opts.points,
    duration: opts.windowSeconds,
    // Fail at once rather than wait for a connection that is not there.
    rejectIfRedisNotReady: true,
    ...(opts.whenRedisIsDown === "memory"
      ? { insuranceLimiter: new RateLimiterMemory({ points: opts.points, duration: opts.windowSeconds }) }
      : {}),
  });
  const stateOf = (res: RateLimiterRes): RateLimitState => ({
    limit: opts.points,
    remaining: Math.max(0, res.remainingPoints),
    resetSeconds: Math.max(0, Math.ceil(res.msBeforeNext / 1000)),
  });
  return {
    points: opts.points,
    windowSeconds: opts.windowSeconds,
    async consume(key, points = 1) {
      try {
        return stateOf(await limiter.consume(key, points));
      } catch (err) {
        if (err instanceof RateLimiterRes)
          throw new AppError(
            "RATE_LIMITED",
            opts.message,
            undefined,
            Math.max(1, Math.ceil(err.msBeforeNext / 1000)),
          );
        throw storeError(redis, err);
      }
    },
    async reward(key, points = 1) {
      try {
        await limiter.reward(key, points);
      } catch (err) {
        throw storeError(redis, err);
      }
    },
  };
}

/** Redis unreachable (or not ready, which rate-limiter-flexible reports as a plain Error) → 503. */
function storeError(redis: Redis, err: unknown): unknown {
  return isDependencyDown(err) || redis.status !== "ready" ? serviceUnavailable("Redis") : err;
}

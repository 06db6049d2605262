// Contract of the `log-batching` queue: `usage.logHits` carries the API hits that clients logged
// at about the same moment (many hits per job, as alert events are grouped), and
// `usage.maintainPartitions` is the scheduled job that keeps a day's partition of `api_hits`
// ready ahead of time and drops those past USAGE_RETENTION_DAYS.
import { z } from "zod";
import { isStorableAddress } from "../lib/cidr.js";
import { pgText } from "../lib/postgres-values.js";
import { baseJobOptions, defineQueue } from "./contract.js";

/** Hits the API puts in one job (domains/usage/service.ts). */
export const USAGE_HITS_PER_JOB = 1000;

/** One hit as it travels: its id and instant are fixed by the API, so a retry inserts nothing new. */
export const loggedHitSchema = z.object({
  /** Random, from the API: with `at`, the row's key. */
  id: z.string().min(1).max(64),
  /** The client's account. */
  accountId: z.string().min(1).max(64),
  /** Epoch milliseconds, before the year 10000 (what Postgres' timestamptz holds). */
  at: z.number().int().nonnegative().max(253_402_300_799_999),
  // Checked here as well as by the API: one hit Postgres refused would sink every job sharing its
  // statement, so a job from an older or broken producer fails on its own, at parse time.
  ip: z.string().refine(isStorableAddress, "must be an IPv4 or IPv6 address"),
  endpoint: pgText().min(1).max(2048),
  method: z.string().min(1).max(16).optional(),
  status: z.number().int().min(100).max(599).optional(),
});
export type LoggedHit = z.infer<typeof loggedHitSchema>;

export const hitBatchSchema = z.object({ hits: z.array(loggedHitSchema).min(1).max(USAGE_HITS_PER_JOB) });
/** What a batch job keeps once its hits are committed: their count, not the hits. */
export const committedBatchSchema = z.object({ logged: z.number().int().min(0) });
export type CommittedBatch = z.infer<typeof committedBatchSchema>;

export const logBatchingQueue = defineQueue({
  name: "log-batching",
  jobs: {
    "usage.logHits": z.union([hitBatchSchema, committedBatchSchema]),
    "usage.maintainPartitions": z.object({}),
  },
  defaultJobOptions: {
    ...baseJobOptions,
    // An unreachable Postgres does not spend attempts (workers/runtime.ts); these are for the rest.
    attempts: 15,
    backoff: { type: "exponential", delay: 500, jitter: 0.5 },
    // The highest volume of all: hits live in Postgres, finished jobs are only for a while.
    removeOnComplete: { age: 600, count: 2_000 },
  },
});

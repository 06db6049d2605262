// A queue contract is data: its name, its job names with a zod payload schema each, and the
// default job options. API, workers and dashboards all import contracts; nothing else
// names a queue.
import { type DefaultJobOptions, type Job, type JobsOptions, Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { z } from "zod";
import { AppError, RETRY_AFTER_SECONDS } from "../lib/errors.js";
import { randomId } from "../lib/ids.js";
import type { Logger } from "../lib/logger.js";
import type { QueueName } from "./names.js";

export interface QueueContract<J extends Record<string, z.ZodType> = Record<string, z.ZodType>> {
  name: QueueName;
  jobs: J;
  defaultJobOptions: DefaultJobOptions;
}

export type JobName<C extends QueueContract> = Extract<keyof C["jobs"], string>;
export type JobPayload<C extends QueueContract, N extends JobName<C>> = z.infer<C["jobs"][N]>;

/** Retries with exponential backoff and jitter; finished jobs trimmed by age and count. */
export const baseJobOptions = {
  attempts: 5,
  backoff: { type: "exponential", delay: 1_000, jitter: 0.5 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 50_000 },
} satisfies DefaultJobOptions;

export function defineQueue<J extends Record<string, z.ZodType>>(
  contract: QueueContract<J>,
): QueueContract<J> {
  return contract;
}

/** How often a queue reads its depth back from Redis; adds in between are counted locally. */
const DEPTH_READ_EVERY_MS = 1_000;
/** Jobs not yet run: what fills Redis while workers fall behind (or wait out a Postgres outage). */
const UNRUN_STATES = ["waiting", "paused", "prioritized", "delayed"] as const;

/**
 * A queue that refuses new jobs with 503 once `maxWaiting` jobs wait to run, so one producer (or
 * a long worker outage) cannot fill Redis up to maxmemory, where every write fails. It overrides
 * `add` so every producer path is bounded. The depth costs one read per DEPTH_READ_EVERY_MS, not
 * one per job: between reads each add counts itself, and other replicas' adds show at the next read.
 */
class BoundedQueue extends Queue {
  private depth = { jobs: 0, readAt: Number.NEGATIVE_INFINITY };
  private reading: Promise<void> | undefined;

  constructor(
    name: string,
    opts: ConstructorParameters<typeof Queue>[1],
    private readonly maxWaiting: number,
  ) {
    super(name, opts);
  }

  override async add(...args: Parameters<Queue["add"]>): ReturnType<Queue["add"]> {
    // No limit configured: nothing to read or count.
    if (this.maxWaiting === Number.POSITIVE_INFINITY) return super.add(...args);
    if (Date.now() - this.depth.readAt >= DEPTH_READ_EVERY_MS) await this.readDepth();
    if (this.depth.jobs >= this.maxWaiting)
      throw new AppError(
        "SERVICE_UNAVAILABLE",
        `queue ${this.name} is full (${this.maxWaiting} jobs waiting to run); retry later`,
        undefined,
        RETRY_AFTER_SECONDS,
      );
    // Counted before it is in, so concurrent adds see each other; a refused add gives its room back.
    this.depth.jobs++;
    try {
      return await super.add(...args);
    } catch (err) {
      this.depth.jobs--;
      throw err;
    }
  }

  /** One read at a time, shared by the adds that wait for it. */
  private readDepth(): Promise<void> {
    this.reading ??= this.getJobCounts(...UNRUN_STATES)
      .then((counts) => {
        this.depth = { jobs: Object.values(counts).reduce((a, b) => a + b, 0), readAt: Date.now() };
      })
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }
}

export function createQueue(
  contract: QueueContract,
  connection: Redis,
  prefix: string,
  logger: Logger,
  maxWaiting = Number.POSITIVE_INFINITY,
): Queue {
  const queue = new BoundedQueue(
    contract.name,
    { connection, prefix, defaultJobOptions: contract.defaultJobOptions },
    maxWaiting,
  );
  queue.on("error", (err) => logger.error({ err, queue: contract.name }, "queue error"));
  return queue;
}

/**
 * Validates the payload against the contract and adds the job under an unguessable id
 * (or `opts.jobId` when the caller chose one, as idempotent submissions do). `owners` are the
 * tenants whose job it is (GET /v1/jobs answers them, and operators); they ride in the job's data
 * beside the payload, which processors parse without them.
 */
export async function enqueue<C extends QueueContract, N extends JobName<C>>(
  queue: Queue,
  contract: C,
  name: N,
  payload: JobPayload<C, N>,
  opts: JobsOptions = {},
  owners?: readonly string[],
): Promise<Job> {
  const schema = contract.jobs[name];
  if (!schema) throw new Error(`queue ${contract.name} has no job ${name}`);
  const data = schema.parse(payload) as object;
  return queue.add(name, owners === undefined ? data : { ...data, [JOB_OWNERS_FIELD]: owners }, {
    ...opts,
    jobId: opts.jobId ?? randomId(),
  });
}

/** The field of a job's data that names its owners (see enqueue). */
export const JOB_OWNERS_FIELD = "owners";

/** The tenants a job belongs to; a job enqueued before jobs had owners is the anonymous tenant's. */
export function jobOwners(job: Job): readonly string[] | undefined {
  const owners = (job.data as Record<string, unknown> | undefined)?.[JOB_OWNERS_FIELD];
  return Array.isArray(owners) ? (owners as string[]) : undefined;
}

/**
 * Replaces a job's data (a processor redacting or shrinking what a finished job keeps), keeping
 * its owners: without them, its status would answer another tenant.
 */
export function replaceJobData(job: Job, data: object): Promise<void> {
  const owners = jobOwners(job);
  return job.updateData(owners === undefined ? data : { ...data, [JOB_OWNERS_FIELD]: owners });
}

/** Parses a job's data in the processor: a payload may come from an older deploy. */
export function parseJobData<C extends QueueContract, N extends JobName<C>>(
  contract: C,
  name: N,
  data: unknown,
): JobPayload<C, N> {
  const schema = contract.jobs[name];
  if (!schema) throw new Error(`queue ${contract.name} has no job ${name}`);
  return schema.parse(data) as JobPayload<C, N>;
}
